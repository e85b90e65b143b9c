-- One row per customer, with the attributes synced to Braze (exposure braze_customer_attributes).
-- Covers many column types: varchar, date, decimal, integer, double, boolean, timestamptz,
-- timestamp, varchar[], struct and json.

with valid_orders as (
    select * from {{ ref('orders') }}
    where status <> 'returned'
),

order_stats as (
    select
        customer_id,
        sum(amount) as lifetime_value,
        count(*) as order_count,
        avg(amount) as avg_order_value,
        min(ordered_at) as first_order_at,
        max(ordered_at) as last_order_at
    from valid_orders
    group by customer_id
),

category_counts as (
    select customer_id, category, count(*) as n
    from valid_orders
    group by customer_id, category
),

favorite_categories as (
    -- up to three categories, most ordered first (ties by name)
    select
        customer_id,
        list(category order by n desc, category)[1:3] as favorite_categories
    from category_counts
    group by customer_id
)

select
    c.customer_id,
    c.first_name,
    c.last_name,
    c.email,
    c.country,
    c.birth_date as dob,
    c.gender,
    case
        when c.email_opt_in then 'opted_in'
        when not c.email_opt_in then 'unsubscribed'
        else 'subscribed'
    end as email_subscribe,
    cast(coalesce(s.lifetime_value, 0) as decimal(12, 2)) as lifetime_value,
    cast(coalesce(s.order_count, 0) as integer) as order_count,
    cast(s.avg_order_value as double) as avg_order_value,
    coalesce(s.lifetime_value, 0) >= {{ var('vip_threshold', 500) }} as is_vip,
    -- seeds hold UTC wall-clock times: make them instants explicitly (independent of TimeZone)
    timezone('UTC', s.first_order_at) as first_order_at,
    s.last_order_at,
    coalesce(f.favorite_categories, []::varchar[]) as favorite_categories,
    struct_pack(city := c.city, zip := c.zip) as address,
    json_object(
        'tier', case
            when coalesce(s.lifetime_value, 0) >= {{ var('vip_threshold', 500) }} then 'gold'
            when coalesce(s.lifetime_value, 0) >= 150 then 'silver'
            else 'bronze'
        end,
        'points', cast(floor(coalesce(s.lifetime_value, 0)) as integer),
        'member_since', cast(c.signup_date as varchar)
    ) as loyalty
from {{ ref('raw_customers') }} as c
left join order_stats as s on s.customer_id = c.customer_id
left join favorite_categories as f on f.customer_id = c.customer_id
