"""dbt-dinmo: dbt-native reverse ETL to Braze.

dbt imports every top-level ``dbt_*`` module on every command, so this file stays import-light:
a version string and nothing else.
"""

__version__ = "0.1.0"
