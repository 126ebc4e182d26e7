"""MIMIC-IV readers (raw CSV, v1.0 and v2.x layouts; MEDS event data) and the ICU cohort rules.

Both readers return the same normalised :class:`~omnifuse.cohorts.mimic.tables.HospitalTables`
(patients, admissions, ICU stays, diagnoses) and stream the charted / lab events of chosen item ids
in batches, so that the cohort rules and the EHR features never depend on the source format.
"""

from omnifuse.cohorts.mimic.sources import open_source

__all__ = ["open_source"]
