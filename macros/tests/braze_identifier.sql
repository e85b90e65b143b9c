{#-
  dinmo.braze_identifier: the column can identify Braze users (external_id, user alias name, ...):
  not null, unique, and at most `max_length` (255) characters. Fails with one row per offending row of the
  model (every copy of a duplicated value), with `dinmo_failure` giving the reason; those are the rows
  dbt-dinmo would reject.

      columns:
        - name: customer_id
          data_tests: [dinmo.braze_identifier]
-#}
{% test braze_identifier(model, column_name, max_length=255) %}
    {{ return(adapter.dispatch('test_braze_identifier', 'dinmo')(model, column_name, max_length)) }}
{% endtest %}

{% macro default__test_braze_identifier(model, column_name, max_length=255) %}
with identifiers as (
    select
        {{ column_name }} as identifier_value,
        count(*) over (partition by {{ column_name }}) as occurrences
    from {{ model }}
)

select
    identifier_value,
    occurrences,
    case
        when identifier_value is null then 'null'
        when occurrences > 1 then 'duplicate'
        else 'longer than {{ max_length }} characters'
    end as dinmo_failure
from identifiers
where identifier_value is null
   or occurrences > 1
   or {{ dbt.length(dinmo.as_text('identifier_value')) }} > {{ max_length }}
{% endmacro %}
