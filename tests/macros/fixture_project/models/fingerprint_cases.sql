-- Text pairs whose naive encodings collide (separators, NULL vs sentinel strings, shifted boundaries).
select case_id, a, b
from (
    values
        ('sep_1', 'a|', 'b'),
        ('sep_2', 'a', '|b'),
        ('shift_1', 'ab', 'c'),
        ('shift_2', 'a', 'bc'),
        ('null_a', null, 'x'),
        ('N_a', 'N', 'x'),
        ('empty_a', '', 'x'),
        ('NULL_text_a', 'NULL', 'x'),
        ('both_null', null, null),
        ('both_empty', '', ''),
        ('encoded_1', 'V1:a', 'b'),
        ('encoded_2', 'V1:aV1:b', null),
        ('unicode', 'é', 'ü👍🏽')
) as t (case_id, a, b)
