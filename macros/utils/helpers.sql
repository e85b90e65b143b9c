{#- Small helpers shared by the dinmo macros. Each one renders SQL text; none runs a query. -#}

{#- `expr` cast to the warehouse's string type. -#}
{% macro as_text(expr) -%}
    cast({{ expr }} as {{ dbt.type_string() }})
{%- endmacro %}

{#- A comma-separated list of SQL string literals: ['a', "o'k"] -> 'a', 'o''k'. -#}
{% macro sql_string_list(values) -%}
    {%- if values is string or values is not iterable or values | length == 0 -%}
        {{ exceptions.raise_compiler_error("dinmo: expected a non-empty list of values, got " ~ values) }}
    {%- endif -%}
    {%- for value in values -%}
        '{{ dbt.escape_single_quotes(value | string) }}'{{ ", " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}

{#-
  True (as SQL) when every character of the string expression `text_expr` is one of `characters`.
  Uses translate() rather than a regular expression (no cross-database regex) or character ranges
  (`between 'A' and 'Z'` depends on the collation).
-#}
{% macro only_characters(text_expr, characters) -%}
    {{ return(adapter.dispatch('only_characters', 'dinmo')(text_expr, characters)) }}
{%- endmacro %}

{% macro default__only_characters(text_expr, characters) -%}
    translate({{ text_expr }}, '{{ dbt.escape_single_quotes(characters) }}', '') = ''
{%- endmacro %}
