{#-
  dinmo.braze_date: the column holds dates Braze accepts, such as `dob` ("YYYY-MM-DD"). The value's text form
  (a DATE column renders as YYYY-MM-DD) must be a real calendar date written YYYY-MM-DD, year 0001-9999:
  '2024-02-29' passes, '2023-02-29', '2024-13-01', '2024-1-5', '05/01/2024' fail. With `allow_time: true`,
  a time part may follow after 'T' or a space (timestamps, '2024-05-01T10:00:00Z'); only the date part is
  checked. Fails with one row per invalid value; nulls pass.

  Postgres renders DATE columns as YYYY-MM-DD under its default DateStyle (ISO); under another DateStyle,
  cast the column to text yourself.
-#}
{% test braze_date(model, column_name, allow_time=false) %}
    {{ return(adapter.dispatch('test_braze_date', 'dinmo')(model, column_name, allow_time)) }}
{% endtest %}

{% macro default__test_braze_date(model, column_name, allow_time=false) %}
with candidates as (
    select
        {{ column_name }} as value,
        {{ dinmo.as_text(column_name) }} as txt
    from {{ model }}
    where {{ column_name }} is not null
),

shaped as (
    select
        value,
        case
            when {% if allow_time -%}
                    ({{ dbt.length('txt') }} = 10
                     or ({{ dbt.length('txt') }} > 10 and substr(txt, 11, 1) in ('T', ' ')))
                 {%- else -%}
                    {{ dbt.length('txt') }} = 10
                 {%- endif %}
             and substr(txt, 5, 1) = '-'
             and substr(txt, 8, 1) = '-'
             and {{ dinmo.only_characters("substr(txt, 1, 4) || substr(txt, 6, 2) || substr(txt, 9, 2)", '0123456789') }}
            then 1
            else 0
        end as well_formed,
        txt
    from candidates
),

parsed as (
    select
        value,
        well_formed,
        case when well_formed = 1 then cast(substr(txt, 1, 4) as integer) end as y,
        case when well_formed = 1 then cast(substr(txt, 6, 2) as integer) end as m,
        case when well_formed = 1 then cast(substr(txt, 9, 2) as integer) end as d
    from shaped
)

select value as invalid_value
from parsed
where well_formed = 0
   or y < 1
   or m < 1
   or m > 12
   or d < 1
   or d > case
            when m in (4, 6, 9, 11) then 30
            when m = 2 then
                case when (mod(y, 4) = 0 and mod(y, 100) <> 0) or mod(y, 400) = 0 then 29 else 28 end
            else 31
          end
{% endmacro %}
