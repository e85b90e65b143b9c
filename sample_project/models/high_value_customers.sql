-- Segment: customers whose lifetime value is above var('high_value_threshold').
-- Source of braze_vip_flags (sync_mode: update), braze_high_value_list (user_lists) and
-- braze_vip_club_subscription (subscription_status): each row is one member.
select
    customer_id,
    lifetime_value
from {{ ref('customers') }}
where lifetime_value > {{ var('high_value_threshold', 300) }}
