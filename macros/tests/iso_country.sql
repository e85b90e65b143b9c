{#-
  dinmo.iso_country: Braze's `country` attribute takes an ISO-3166-1 alpha-2 code ('NL', 'US', 'GB'; not
  'UK', 'nl' or 'Netherlands'). Fails with one row per value outside `values` (default: the shipped list,
  dinmo.iso_3166_alpha2_codes()); nulls pass.
-#}
{% test iso_country(model, column_name, values=none) %}
    {{ return(adapter.dispatch('test_iso_country', 'dinmo')(model, column_name, values)) }}
{% endtest %}

{% macro default__test_iso_country(model, column_name, values=none) %}
{%- set codes = values if values is not none else dinmo.iso_3166_alpha2_codes() %}
select
    {{ column_name }} as invalid_value
from {{ model }}
where {{ column_name }} is not null
  and {{ dinmo.as_text(column_name) }} not in ({{ dinmo.sql_string_list(codes) }})
{% endmacro %}
