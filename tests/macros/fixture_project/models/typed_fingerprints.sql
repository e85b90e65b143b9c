-- The same fingerprint through the three ways of giving column types, and once without types.
{%- set names = ['f', 'tstz', 'ts', 'd', 'amount', 'flag', 'txt'] %}
{%- set columns = [] %}
{%- if execute %}
    {%- for col in adapter.get_columns_in_relation(ref('typed_cases')) if col.name | lower != 'id' %}
        {%- do columns.append(col) %}
    {%- endfor %}
{%- else %}
    {%- set columns = names %}
{%- endif %}
{%- set mappings = [
    {'name': 'f', 'type': 'float'},
    {'expr': 'tstz', 'type': 'timestamp with time zone'},
    {'name': 'ts', 'type': 'timestamp'},
    {'name': 'd', 'type': 'date'},
    {'name': 'amount', 'type': 'decimal(10,2)'},
    {'name': 'flag', 'type': 'boolean'},
    {'name': 'txt'},
] %}
select
    id,
    {{ dinmo.fingerprint(names, relation=ref('typed_cases')) }} as fp_relation,
    {{ dinmo.fingerprint(columns) }} as fp_columns,
    {{ dinmo.fingerprint(mappings) }} as fp_mapping,
    {{ dinmo.fingerprint(names) }} as fp_untyped
from {{ ref('typed_cases') }}
