{#-
  dinmo.quantity_1_100: a purchase's `quantity` must be a whole number from 1 to 100. Works on integer,
  decimal and float columns (2.0 passes, 2.5 fails). Fails with one row per invalid value; nulls pass.
-#}
{% test quantity_1_100(model, column_name) %}
    {{ return(adapter.dispatch('test_quantity_1_100', 'dinmo')(model, column_name)) }}
{% endtest %}

{% macro default__test_quantity_1_100(model, column_name) %}
select
    {{ column_name }} as invalid_value
from {{ model }}
where {{ column_name }} is not null
  and not (
        {{ column_name }} >= 1
    and {{ column_name }} <= 100
    and {{ column_name }} = floor({{ column_name }})
  )
{% endmacro %}
