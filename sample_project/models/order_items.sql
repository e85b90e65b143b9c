-- One row per order line, with its order's customer and time: one Braze purchase each
-- (exposure braze_order_purchases). No cursor there: the whole model is diffed against the
-- purchases already sent.
select
    cast(i.order_item_id as varchar) as order_item_id,
    cast(i.order_id as varchar) as order_id,
    o.customer_id,
    o.ordered_at,
    cast(i.product_sku as varchar) as product_sku,
    cast(i.product_name as varchar) as product_name,
    cast(i.unit_price as decimal(10, 2)) as unit_price,
    cast(i.quantity as integer) as quantity,
    cast(i.store_name as varchar) as store_name,
    o.category
from {{ ref('raw_order_items') }} as i
inner join {{ ref('orders') }} as o on o.order_id = i.order_id
