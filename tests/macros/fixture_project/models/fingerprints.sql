select
    case_id,
    {{ dinmo.fingerprint(['a', 'b']) }} as fp,
    {{ dinmo.fingerprint('a') }} as fp_a
from {{ ref('fingerprint_cases') }}
