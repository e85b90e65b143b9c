{#-
  dinmo.iso_currency: a purchase's `currency` must be an ISO 4217 alphabetic code. By default checks the
  form (exactly three uppercase letters A-Z); with `strict: true`, also that the code is in the shipped list
  (dinmo.iso_4217_currency_codes()), or in `values` when given. Fails with one row per invalid value; nulls
  pass (use not_null when the column is required).
-#}
{% test iso_currency(model, column_name, strict=false, values=none) %}
    {{ return(adapter.dispatch('test_iso_currency', 'dinmo')(model, column_name, strict, values)) }}
{% endtest %}

{% macro default__test_iso_currency(model, column_name, strict=false, values=none) %}
{%- set txt = dinmo.as_text(column_name) %}
select
    {{ column_name }} as invalid_value
from {{ model }}
where {{ column_name }} is not null
  and (
    {%- if strict or values is not none %}
        {%- set codes = values if values is not none else dinmo.iso_4217_currency_codes() %}
        {{ txt }} not in ({{ dinmo.sql_string_list(codes) }})
    {%- else %}
        {{ dbt.length(txt) }} <> 3
        or not ({{ dinmo.only_characters(txt, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') }})
    {%- endif %}
  )
{% endmacro %}
