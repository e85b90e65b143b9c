-- Customers who explicitly opted in to the newsletter.
-- Source of the braze_newsletter_mirror activation (sync_mode: mirror): customers who leave
-- this model get their newsletter attribute removed in Braze.
select
    customer_id,
    email,
    first_name
from {{ ref('customers') }}
where email_subscribe = 'opted_in'
