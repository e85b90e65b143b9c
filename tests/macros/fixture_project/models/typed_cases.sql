-- One row of every type the fingerprint normalises, a row of nulls, and floats the normalisation keeps as text.
select
    1 as id,
    cast(1 as float8) / 3 as f,
    cast('2024-01-01 10:00:00+00' as timestamp with time zone) as tstz,
    cast('2024-01-01 10:00:00.5' as timestamp) as ts,
    cast('2024-02-29' as date) as d,
    cast(12.5 as decimal(10, 2)) as amount,
    true as flag,
    'x' as txt
union all
select 2, cast(0.1 as float8) + cast(0.2 as float8), null, null, null, null, null, null
union all
select 3, cast(0.3 as float8), null, null, null, null, null, null
union all
select 4, null, null, null, null, null, null, null
union all
select 5, cast(1e30 as float8), null, null, null, null, null, null
union all
select 6, cast('NaN' as float8), null, null, null, null, null, null
