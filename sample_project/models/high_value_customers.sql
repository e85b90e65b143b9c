-- Segment: customers whose lifetime value is above var('high_value_threshold').
-- Source of the braze_vip_flags activation (sync_mode: update).
select
    customer_id,
    lifetime_value
from {{ ref('customers') }}
where lifetime_value > {{ var('high_value_threshold', 300) }}
