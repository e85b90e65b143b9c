-- One row per order.
select
    order_id,
    customer_id,
    ordered_at,
    amount,
    status,
    category
from {{ ref('raw_orders') }}
