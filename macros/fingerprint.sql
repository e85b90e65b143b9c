{#-
  dinmo.fingerprint(columns, relation=none): a row fingerprint for in-warehouse change detection, as a SQL
  expression returning 32 hex characters (md5):

      select customer_id, {{ dinmo.fingerprint(['email', 'country', 'lifetime_value']) }} as fingerprint
      from {{ ref('customers') }}

  Collision-safe across NULLs and separators: each value is encoded as 'N' when null, else
  'V' || length(text) || ':' || text, the pieces are concatenated in order and hashed, so ('a|', 'b') and
  ('a', '|b') differ, and NULL, 'N', 'NULL' and '' all differ.

  `columns`: a list (or a single item) of column names / SQL expressions (strings, used verbatim), dbt Column
  objects (adapter.get_columns_in_relation), or mappings {"name" or "expr": ..., "type": ...}.
  Values are normalised by type, so that equal values give equal fingerprints whatever the session:
    - float / real / double: rounded to 9 decimal places (cast to decimal(38, 9)); NaN, infinities and
      magnitudes of 1e27 or more keep their plain text form;
    - timestamp with time zone: converted to UTC, 'YYYY-MM-DDTHH:MM:SS[.ffffff]Z' (independent of the
      session's TimeZone);
    - timestamp without time zone: 'YYYY-MM-DDTHH:MM:SS[.ffffff]';
    - anything else: cast to the string type (dates render YYYY-MM-DD, booleans true/false).
  A value's type comes from the Column object or the mapping's "type" (a database type name, or one of the
  kinds float, timestamp, timestamptz, date, text); for plain names, pass `relation` (e.g. ref('customers'))
  and the types are read from the warehouse. Plain expressions without a known type are cast to text.

  Fingerprints are comparable within one engine (and version of this macro, dinmo.fingerprint_version()),
  not across engines: store the version with any saved fingerprints and recompute when it changes.
-#}

{% macro fingerprint_version() -%}
    {{ return("dinmo-fingerprint-v1") }}
{%- endmacro %}

{% macro fingerprint(columns, relation=none) -%}
    {{ return(adapter.dispatch('fingerprint', 'dinmo')(columns, relation)) }}
{%- endmacro %}

{% macro default__fingerprint(columns, relation=none) -%}
    {%- set items = dinmo.fingerprint_items(columns, relation) -%}
    {%- set pieces = [] -%}
    {%- for item in items -%}
        {%- do pieces.append(dinmo.fingerprint_encode(item.expr, item.kind)) -%}
    {%- endfor -%}
    {{ dbt.hash(pieces | join(' || ')) }}
{%- endmacro %}

{#- One value's injective encoding: 'N' for null, else 'V<length>:<normalised text>'. -#}
{% macro fingerprint_encode(expr, kind='text') -%}
    {{ return(adapter.dispatch('fingerprint_encode', 'dinmo')(expr, kind)) }}
{%- endmacro %}

{% macro default__fingerprint_encode(expr, kind='text') -%}
    {%- set txt = dinmo.fingerprint_text(expr, kind) -%}
    case when {{ expr }} is null then 'N'
         else 'V' || {{ dinmo.as_text(dbt.length(txt)) }} || ':' || {{ txt }} end
{%- endmacro %}

{#- A value's normalised text form, by kind (float, timestamp, timestamptz, date, text). -#}
{% macro fingerprint_text(expr, kind='text') -%}
    {{ return(adapter.dispatch('fingerprint_text', 'dinmo')(expr, kind)) }}
{%- endmacro %}

{% macro default__fingerprint_text(expr, kind='text') -%}
    {%- if kind == 'float' -%}
        case when abs({{ expr }}) < 1e27 then {{ dinmo.as_text("cast(" ~ expr ~ " as decimal(38, 9))") }}
             else {{ dinmo.as_text(expr) }} end
    {%- elif kind == 'timestamptz' -%}
        replace({{ dinmo.as_text("(" ~ expr ~ ") at time zone 'UTC'") }}, ' ', 'T') || 'Z'
    {%- elif kind == 'timestamp' -%}
        replace({{ dinmo.as_text(expr) }}, ' ', 'T')
    {%- else -%}
        {{ dinmo.as_text(expr) }}
    {%- endif -%}
{%- endmacro %}

{#- The kind of a database type name: float, timestamptz, timestamp, date or text. -#}
{% macro fingerprint_kind(data_type) -%}
    {%- set t = (data_type or '') | string | lower | trim -%}
    {%- set base = t.split('(')[0] | trim -%}
    {%- if base in ['float', 'timestamp', 'timestamptz', 'date', 'text'] and t == base -%}
        {%- set kind = base -%}
    {%- elif base in ['real', 'float4', 'float8', 'float64', 'double', 'double precision', 'binary_double',
                      'binary_float'] -%}
        {%- set kind = 'float' -%}
    {%- elif base in ['time', 'timetz', 'time with time zone', 'time without time zone'] -%}
        {%- set kind = 'text' -%}
    {%- elif 'with time zone' in t or 'with local time zone' in t
             or base in ['timestamp_tz', 'timestamp_ltz', 'timestamp with time zone'] -%}
        {%- set kind = 'timestamptz' -%}
    {%- elif base.startswith('timestamp') or base == 'datetime' or base == 'datetime2' -%}
        {%- set kind = 'timestamp' -%}
    {%- elif base == 'date' -%}
        {%- set kind = 'date' -%}
    {%- else -%}
        {%- set kind = 'text' -%}
    {%- endif -%}
    {{ return(kind) }}
{%- endmacro %}

{#- Normalise `columns` into a list of {expr, kind}. -#}
{% macro fingerprint_items(columns, relation=none) -%}
    {%- if columns is none -%}
        {{ exceptions.raise_compiler_error("dinmo.fingerprint: `columns` is required") }}
    {%- endif -%}
    {%- set columns = [columns] if (columns is string or columns is mapping or columns.dtype is defined)
                                else columns -%}
    {%- if columns | length == 0 -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error("dinmo.fingerprint: `columns` is empty") }}
        {%- endif -%}
        {#- at parse time, column lists read from the warehouse are empty: render a placeholder -#}
        {{ return([{"expr": "''", "kind": "text"}]) }}
    {%- endif -%}
    {%- set types = {} -%}
    {%- if relation is not none and execute -%}
        {%- for col in adapter.get_columns_in_relation(relation) -%}
            {%- do types.update({col.name | lower: col.data_type}) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set items = [] -%}
    {%- for col in columns -%}
        {%- if col is string -%}
            {%- do items.append({"expr": col, "kind": dinmo.fingerprint_kind(types.get(col | lower))}) -%}
        {%- elif col is mapping -%}
            {%- set expr = col.get("expr") or col.get("name") -%}
            {%- if not expr -%}
                {{ exceptions.raise_compiler_error("dinmo.fingerprint: a column mapping needs `name` or `expr`: " ~ col) }}
            {%- endif -%}
            {%- set data_type = col.get("type") or types.get(expr | lower) -%}
            {%- do items.append({"expr": expr, "kind": dinmo.fingerprint_kind(data_type)}) -%}
        {%- elif col.dtype is defined -%}
            {%- do items.append({"expr": adapter.quote(col.name), "kind": dinmo.fingerprint_kind(col.data_type)}) -%}
        {%- else -%}
            {{ exceptions.raise_compiler_error("dinmo.fingerprint: unsupported column " ~ col) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(items) }}
{%- endmacro %}
