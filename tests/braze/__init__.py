"""Tests for dbt_dinmo.braze."""
