"""The MIMIC-IV items behind the 17 MedFuse / mimic3-benchmarks clinical variables.

One record per item id as the real dictionaries list it (``icu/d_items`` for chartevents items,
``hosp/d_labitems`` for labevents items), with the unit it is charted in and the benchmark variable it
feeds. The synthetic hospital writes these items; the EHR reader maps them back to the variables.
Variable names are the mimic3-benchmarks channel names.
"""

from __future__ import annotations

from dataclasses import dataclass

CAPILLARY_REFILL = "Capillary refill rate"
DIASTOLIC_BP = "Diastolic blood pressure"
FIO2 = "Fraction inspired oxygen"
GCS_EYE = "Glascow coma scale eye opening"
GCS_MOTOR = "Glascow coma scale motor response"
GCS_TOTAL = "Glascow coma scale total"
GCS_VERBAL = "Glascow coma scale verbal response"
GLUCOSE = "Glucose"
HEART_RATE = "Heart Rate"
HEIGHT = "Height"
MEAN_BP = "Mean blood pressure"
SPO2 = "Oxygen saturation"
RESP_RATE = "Respiratory rate"
SYSTOLIC_BP = "Systolic blood pressure"
TEMPERATURE = "Temperature"
WEIGHT = "Weight"
PH = "pH"

VARIABLES = (
    CAPILLARY_REFILL, DIASTOLIC_BP, FIO2, GCS_EYE, GCS_MOTOR, GCS_TOTAL, GCS_VERBAL, GLUCOSE, HEART_RATE,
    HEIGHT, MEAN_BP, SPO2, RESP_RATE, SYSTOLIC_BP, TEMPERATURE, WEIGHT, PH,
)  # fmt: skip


@dataclass(frozen=True)
class Item:
    itemid: int
    label: str
    abbreviation: str
    linksto: str  # "chartevents" | "labevents"
    category: str
    unit: str | None  # unit of `valuenum` as charted (valueuom)
    param_type: str  # "Numeric" | "Text"
    variable: str | None  # benchmark variable, None for items that feed none


ITEMS: tuple[Item, ...] = (
    Item(220045, "Heart Rate", "HR", "chartevents", "Routine Vital Signs", "bpm", "Numeric", HEART_RATE),
    Item(220050, "Arterial Blood Pressure systolic", "ABPs", "chartevents", "Routine Vital Signs", "mmHg",
         "Numeric", SYSTOLIC_BP),
    Item(220051, "Arterial Blood Pressure diastolic", "ABPd", "chartevents", "Routine Vital Signs", "mmHg",
         "Numeric", DIASTOLIC_BP),
    Item(220052, "Arterial Blood Pressure mean", "ABPm", "chartevents", "Routine Vital Signs", "mmHg",
         "Numeric", MEAN_BP),
    Item(220179, "Non Invasive Blood Pressure systolic", "NBPs", "chartevents", "Routine Vital Signs",
         "mmHg", "Numeric", SYSTOLIC_BP),
    Item(220180, "Non Invasive Blood Pressure diastolic", "NBPd", "chartevents", "Routine Vital Signs",
         "mmHg", "Numeric", DIASTOLIC_BP),
    Item(220181, "Non Invasive Blood Pressure mean", "NBPm", "chartevents", "Routine Vital Signs", "mmHg",
         "Numeric", MEAN_BP),
    Item(220210, "Respiratory Rate", "RR", "chartevents", "Respiratory", "insp/min", "Numeric", RESP_RATE),
    Item(224690, "Respiratory Rate (Total)", "Respiratory Rate (Total)", "chartevents", "Respiratory",
         "insp/min", "Numeric", RESP_RATE),
    Item(220277, "O2 saturation pulseoxymetry", "SpO2", "chartevents", "Respiratory", "%", "Numeric", SPO2),
    Item(223761, "Temperature Fahrenheit", "Temperature F", "chartevents", "Routine Vital Signs", "°F",
         "Numeric", TEMPERATURE),
    Item(223762, "Temperature Celsius", "Temperature C", "chartevents", "Routine Vital Signs", "°C",
         "Numeric", TEMPERATURE),
    Item(223835, "Inspired O2 Fraction", "FiO2", "chartevents", "Respiratory", "%", "Numeric", FIO2),
    Item(220621, "Glucose (serum)", "Glucose (serum)", "chartevents", "Labs", "mg/dL", "Numeric", GLUCOSE),
    Item(225664, "Glucose finger stick (range 70-100)", "Glucose FS (range 70 -100)", "chartevents",
         "Routine Vital Signs", "mg/dL", "Numeric", GLUCOSE),
    Item(226537, "Glucose (whole blood)", "Glucose (whole blood)", "chartevents", "Labs", "mg/dL", "Numeric",
         GLUCOSE),
    Item(223830, "PH (Arterial)", "PH (Arterial)", "chartevents", "Labs", "units", "Numeric", PH),
    Item(224639, "Daily Weight", "Daily Weight", "chartevents", "General", "kg", "Numeric", WEIGHT),
    Item(226512, "Admission Weight (Kg)", "Admission Weight (Kg)", "chartevents", "General", "kg", "Numeric",
         WEIGHT),
    Item(226531, "Admission Weight (lbs.)", "Admission Weight (lbs.)", "chartevents", "General", "lbs",
         "Numeric", WEIGHT),
    Item(226730, "Height (cm)", "Height (cm)", "chartevents", "General", "cm", "Numeric", HEIGHT),
    Item(226707, "Height", "Height", "chartevents", "General", "Inch", "Numeric", HEIGHT),
    Item(220739, "GCS - Eye Opening", "GCS - Eye Opening", "chartevents", "Neurological", None, "Text",
         GCS_EYE),
    Item(223900, "GCS - Verbal Response", "GCS - Verbal Response", "chartevents", "Neurological", None,
         "Text", GCS_VERBAL),
    Item(223901, "GCS - Motor Response", "GCS - Motor Response", "chartevents", "Neurological", None, "Text",
         GCS_MOTOR),
    Item(223951, "Capillary Refill R", "Capillary Refill R", "chartevents", "Skin - Assessment", None,
         "Text", CAPILLARY_REFILL),
    Item(224308, "Capillary Refill L", "Capillary Refill L", "chartevents", "Skin - Assessment", None,
         "Text", CAPILLARY_REFILL),
    # Charted beside the variables but feeding none of them: readers must filter them out.
    Item(220046, "Heart rate Alarm - High", "HR Alarm - High", "chartevents", "Alarms", "bpm", "Numeric",
         None),
    Item(220048, "Heart Rhythm", "Heart Rhythm", "chartevents", "Routine Vital Signs", None, "Text", None),
    # hosp/labevents
    Item(50931, "Glucose", "", "labevents", "Chemistry", "mg/dL", "Numeric", GLUCOSE),
    Item(50809, "Glucose", "", "labevents", "Blood Gas", "mg/dL", "Numeric", GLUCOSE),
    Item(50820, "pH", "", "labevents", "Blood Gas", "units", "Numeric", PH),
    Item(50912, "Creatinine", "", "labevents", "Chemistry", "mg/dL", "Numeric", None),
    Item(50983, "Sodium", "", "labevents", "Chemistry", "mEq/L", "Numeric", None),
    Item(51222, "Hemoglobin", "", "labevents", "Hematology", "g/dL", "Numeric", None),
)  # fmt: skip

ITEMS_BY_ID: dict[int, Item] = {item.itemid: item for item in ITEMS}


# MIMIC-IV GCS text values with their valuenum, as charted in icu/chartevents.
GCS_EYE_VALUES = {4: "Spontaneously", 3: "To Speech", 2: "To Pain", 1: "None"}
GCS_VERBAL_VALUES = {
    5: "Oriented", 4: "Confused", 3: "Inappropriate Words", 2: "Incomprehensible sounds", 1: "No Response",
}  # fmt: skip
GCS_VERBAL_INTUBATED = "No Response-ETT"  # valuenum 0 in MIMIC-IV
GCS_MOTOR_VALUES = {
    6: "Obeys Commands", 5: "Localizes Pain", 4: "Flex-withdraws", 3: "Abnormal Flexion",
    2: "Abnormal extension", 1: "No response",
}  # fmt: skip
CAPILLARY_REFILL_VALUES = {0: "Normal <3 Seconds", 1: "Abnormal >3 Seconds"}
