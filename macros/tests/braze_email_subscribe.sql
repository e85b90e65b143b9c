{#-
  dinmo.braze_email_subscribe: Braze's `email_subscribe` attribute takes exactly 'opted_in', 'subscribed' or
  'unsubscribed' (lowercase). Fails with one row per other value; nulls pass.
-#}
{% test braze_email_subscribe(model, column_name) %}
    {{ return(adapter.dispatch('test_braze_email_subscribe', 'dinmo')(model, column_name)) }}
{% endtest %}

{% macro default__test_braze_email_subscribe(model, column_name) %}
select
    {{ column_name }} as invalid_value
from {{ model }}
where {{ column_name }} is not null
  and {{ dinmo.as_text(column_name) }} not in ('opted_in', 'subscribed', 'unsubscribed')
{% endmacro %}
