{#-
  dinmo.braze_string: Braze truncates or rejects string values longer than 255 characters. Fails with one
  row per value longer than `max_length` (255) characters; nulls pass.
-#}
{% test braze_string(model, column_name, max_length=255) %}
    {{ return(adapter.dispatch('test_braze_string', 'dinmo')(model, column_name, max_length)) }}
{% endtest %}

{% macro default__test_braze_string(model, column_name, max_length=255) %}
select
    {{ column_name }} as invalid_value,
    {{ dbt.length(dinmo.as_text(column_name)) }} as value_length
from {{ model }}
where {{ column_name }} is not null
  and {{ dbt.length(dinmo.as_text(column_name)) }} > {{ max_length }}
{% endmacro %}
