"""Charted and lab events of the synthetic ICU stays (``icu/chartevents``, ``hosp/labevents``).

Irregular charting as in a real ICU: vital signs about hourly (arterial line or cuff), temperature and
GCS every few hours, capillary refill every 8 h, FiO2 while on oxygen, finger-stick glucose, daily
weights, one height, labs a few times a day (arterial blood gases for ventilated patients), plus
outpatient labs without ``hadm_id``, items that feed no variable, events charted shortly before ICU
admission, unit variants (°F/°C, kg/lbs, cm/inch, FiO2 as a fraction, SpO2 as a fraction) and a small
rate of physiologically impossible charting errors.

Values follow each stay's latent state (phenotypes, acuity: the part of the latent severity that shows
in the chart) scaled by ``ehr_signal``, a per-stay
offset, a circadian rhythm, a slow random oscillation, measurement noise and, in the last day before
an in-hospital death, a deterioration trend. Events are generated a chunk of stays at a time from a
stream keyed on the chunk, so memory stays bounded and the output does not depend on scheduling.

Filler rows (``filler_ratio``): most of a real ``chartevents`` table is charting that the EHR features
never read (nursing assessments, alarm limits, ventilator settings, safety checks). Benchmarks of the
EHR extraction see the real row counts only with these rows, so ``omnifuse synth mimic --filler-ratio R``
adds ``R`` such rows per row of the 17 variables' items (off by default: the demo hospital is unchanged).

Ratio: in the MIMIC-IV Clinical Database Demo v2.2 (100 patients, 140 ICU stays, all 668,862 rows of its
``chartevents``), 110,209 rows (16.5 %) have the item ids of the 17 variables (the item map of
:mod:`omnifuse.synth.mimic_items`) and 558,653 do not: 5.07 filler rows per variable row
(:data:`MIMIC_IV_FILLER_RATIO`). The full MIMIC-IV v2.2 ``chartevents`` (~313 M rows) is taken to have
the same mix; it is the demo's, not a count over the full database.

Items: the most frequent such items of that demo, with their MIMIC-IV item ids and ``d_items`` labels,
drawn with weights proportional to their demo row counts. Text items get plausible charted texts, numeric
ones plausible settings. A filler row is charted at the time of a variable row of the same stay (nurses
chart assessments with the vital signs), so filler rows follow each stay's length and charting density.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from omnifuse.synth import mimic_items as mi
from omnifuse.synth.population import HOUR, MINUTE, Population
from omnifuse.synth.rng import keyed_rng


@dataclass(frozen=True)
class Vital:
    """Trajectory parameters of one continuous variable."""

    base: float
    offset_sd: float  # between-stay spread of the level
    circadian: float  # amplitude of the daily rhythm (and of a slower oscillation)
    noise: float  # measurement noise sd
    effects: dict[str, float]  # shift per phenotype label, or per unit of acuity
    dying: float  # shift reached at an in-hospital death


VITALS: dict[str, Vital] = {
    "hr": Vital(
        84.0, 9.0, 4.0, 4.0, {"sepsis": 10, "shock": 9, "dysrhythmia": 8, "pneumonia": 5, "acuity": 7}, 28
    ),
    "sbp": Vital(
        121.0, 11.0, 5.0, 7.0, {"shock": -20, "sepsis": -7, "htn": 9, "htn_comp": 11, "acuity": -6}, -35
    ),
    "dbp": Vital(
        62.0, 7.0, 3.0, 5.0, {"shock": -10, "sepsis": -4, "htn": 5, "htn_comp": 5, "acuity": -3}, -18
    ),
    "rr": Vital(
        19.0,
        2.5,
        1.0,
        2.2,
        {"resp_failure": 4, "pneumonia": 3, "copd": 2, "sepsis": 2, "acuity": 2},
        9,
    ),
    "spo2": Vital(
        97.0,
        1.1,
        0.4,
        1.0,
        {"resp_failure": -2.5, "pneumonia": -1.5, "copd": -1.5, "acuity": -0.9},
        -9,
    ),
    "temp": Vital(
        37.0, 0.3, 0.25, 0.25, {"sepsis": 0.9, "pneumonia": 0.6, "shock": -0.3, "acuity": 0.15}, -0.7
    ),
    "glucose": Vital(125.0, 16.0, 6.0, 20.0, {"dm_comp": 60, "dm": 38, "sepsis": 15, "acuity": 9}, 30),
    "ph": Vital(
        7.40,
        0.02,
        0.005,
        0.03,
        {"shock": -0.08, "arf": -0.04, "resp_failure": -0.05, "acuity": -0.025},
        -0.12,
    ),
}

# Hours before an in-hospital death over which the charted values deteriorate (a linear ramp).
DETERIORATION_HOURS = 24.0

# Charting errors: values outside the physiological ranges that cleaning must drop (98.6 °F typed as 986).
IMPOSSIBLE: dict[int, tuple[float, ...]] = {
    220045: (0.0, 450.0),
    220050: (0.0, 420.0),
    220179: (0.0, 420.0),
    220051: (0.0, 380.0),
    220180: (0.0, 380.0),
    220210: (0.0, 350.0),
    220277: (0.0, 160.0),
    223761: (986.0, 9.8),
    225664: (0.0, 9999.0),
}

TEXT_VALUES: tuple[str, ...] = (
    *mi.GCS_EYE_VALUES.values(),
    *mi.GCS_VERBAL_VALUES.values(),
    mi.GCS_VERBAL_INTUBATED,
    *mi.GCS_MOTOR_VALUES.values(),
    *mi.CAPILLARY_REFILL_VALUES.values(),
    "SR (Sinus Rhythm)",
    "ST (Sinus Tachycardia)",
    "AF (Atrial Fibrillation)",
)
_TEXT_INDEX = {v: i for i, v in enumerate(TEXT_VALUES)}
DECIMALS = {223761: 1, 223762: 1, 223830: 2, 224639: 1, 226512: 1, 226531: 1, 50820: 2, 50912: 1, 51222: 1}


@dataclass
class EventBuffer:
    """Columns of events appended piece by piece, turned into a frame once per chunk."""

    stay: list[np.ndarray] = field(default_factory=list)
    itemid: list[np.ndarray] = field(default_factory=list)
    time: list[np.ndarray] = field(default_factory=list)
    valuenum: list[np.ndarray] = field(default_factory=list)
    text: list[np.ndarray] = field(default_factory=list)  # index into TEXT_VALUES, -1 for numeric values

    def add(
        self,
        stay: np.ndarray,
        itemid: int | np.ndarray,
        time: np.ndarray,
        valuenum: np.ndarray,
        text: np.ndarray | None = None,
    ) -> None:
        n = len(stay)
        self.stay.append(stay)
        self.itemid.append(np.broadcast_to(np.asarray(itemid, np.int64), (n,)).copy())
        self.time.append(time.astype(np.int64))
        self.valuenum.append(np.asarray(valuenum, np.float64))
        self.text.append(np.full(n, -1, np.int64) if text is None else text)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(getattr(self, k)) for k in ("stay", "itemid", "time", "valuenum", "text")}


def vital_offsets(seed: int, n_stays: int) -> np.ndarray:
    """(n_stays, len(VITALS)) standard-normal level offsets of every stay and variable, from one keyed
    stream (so the ground truth can record each stay's level whatever the chunking)."""
    return keyed_rng(seed, "vital-offsets").standard_normal((n_stays, len(VITALS)))


def vital_levels(pop: Population, seed: int, signal: float) -> dict[str, np.ndarray]:
    """Each stay's mean level of every continuous variable (before rhythms, noise and deterioration)."""
    chunk = StayChunk.from_population(pop, np.arange(pop.n_stays), vital_offsets(seed, pop.n_stays))
    return {
        name: spec.base + chunk.offsets[:, j] * spec.offset_sd + chunk.effect(name, signal)
        for j, (name, spec) in enumerate(VITALS.items())
    }


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def schedule(
    rng: np.random.Generator,
    start: np.ndarray,
    end: np.ndarray,
    interval_h: float | np.ndarray,
    *,
    active: np.ndarray | None = None,
    p_keep: float = 0.95,
    jitter: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """Irregular times every ~``interval_h`` hours in [start, end] for each row: (row index, time)."""
    interval = np.broadcast_to(np.asarray(interval_h, np.float64) * HOUR, start.shape)
    dur = np.maximum(end - start, 0)
    n = (dur // interval).astype(np.int64) + 1
    if active is not None:
        n = np.where(active, n, 0)
    idx = np.repeat(np.arange(len(start)), n)
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    phase = rng.uniform(0.0, 1.0, len(start))
    t = start[idx] + (k + phase[idx] + rng.uniform(-jitter, jitter, len(idx))) * interval[idx]
    t = t.astype(np.int64)
    t -= t % MINUTE
    keep = (t >= start[idx]) & (t <= end[idx]) & (rng.random(len(idx)) < p_keep)
    return idx[keep], t[keep]


@dataclass
class StayChunk:
    """The stays of one chunk with everything their events depend on."""

    index: np.ndarray  # positions in the population's stay arrays
    intime: np.ndarray
    outtime: np.ndarray
    death: np.ndarray  # in-hospital death time (s) or -1
    labels: dict[str, np.ndarray]
    acuity: np.ndarray  # the part of the latent severity the chart shows
    offsets: np.ndarray  # (n, len(VITALS)) per-stay level offsets in units of each variable's offset_sd
    ventilated: np.ndarray
    height_cm: np.ndarray
    weight_kg: np.ndarray

    @classmethod
    def from_population(cls, pop: Population, index: np.ndarray, offsets: np.ndarray) -> StayChunk:
        """The stays at ``index``; ``offsets`` = :func:`vital_offsets` of the whole population."""
        st, adm, pat = pop.stays, pop.admissions, pop.patients
        a = st["admission_index"][index]
        p = st["patient_index"][index]
        return cls(
            index=index,
            intime=st["intime"][index],
            outtime=st["outtime"][index],
            death=adm["deathtime"][a],
            labels={k: v[index].astype(np.float64) for k, v in pop.labels.items()},
            acuity=st["acuity"][index],
            offsets=offsets[index],
            ventilated=st["ventilated"][index],
            height_cm=pat["height_cm"][p],
            weight_kg=pat["weight_kg"][p],
        )

    def effect(self, variable: str, signal: float) -> np.ndarray:
        out = np.zeros(len(self.index))
        for key, w in VITALS[variable].effects.items():
            out += w * (self.acuity if key == "acuity" else self.labels[key])
        return signal * out

    def dying(self, stay: np.ndarray, t: np.ndarray, window_h: float = DETERIORATION_HOURS) -> np.ndarray:
        """0..1 ramp over the ``window_h`` hours before an in-hospital death (0 for survivors)."""
        d = self.death[stay]
        ramp = 1.0 - (d - t) / (window_h * HOUR)
        return np.where(d > 0, np.clip(ramp, 0.0, 1.0), 0.0)


class VitalModel:
    """Continuous trajectories: value(stay, t) for one variable."""

    def __init__(self, chunk: StayChunk, variable: str, rng: np.random.Generator, signal: float) -> None:
        spec = VITALS[variable]
        self.amp, self.noise, self.dying_shift = spec.circadian, spec.noise, spec.dying
        n = len(chunk.index)
        self.chunk, self.signal = chunk, signal
        offset = chunk.offsets[:, list(VITALS).index(variable)] * spec.offset_sd
        self.level = spec.base + offset + chunk.effect(variable, signal)
        self.phase = rng.uniform(0, 2 * np.pi, n)
        self.slow_period = rng.uniform(18, 72, n) * HOUR
        self.slow_phase = rng.uniform(0, 2 * np.pi, n)
        self.rng = rng

    def __call__(self, stay: np.ndarray, t: np.ndarray) -> np.ndarray:
        hours = t / HOUR
        day = np.sin(2 * np.pi * hours / 24.0 + self.phase[stay])
        slow = np.sin(2 * np.pi * t / self.slow_period[stay] + self.slow_phase[stay])
        value = self.level[stay] + self.amp * (day + 0.8 * slow) + self.rng.normal(0, self.noise, len(stay))
        return value + self.signal * self.dying_shift * self.chunk.dying(stay, t)


def chart_chunk(
    chunk: StayChunk, rng: np.random.Generator, ehr_signal: float, error_rate: float
) -> EventBuffer:
    """All chartevents of one chunk of stays."""
    buf = EventBuffer()
    n = len(chunk.index)
    lab = chunk.labels
    early = rng.random(n) < 0.15  # some charting starts shortly before the recorded ICU intime
    start = chunk.intime - np.where(early, rng.uniform(0.3, 2.0, n) * HOUR, 0).astype(np.int64)
    end = chunk.outtime
    models = {v: VitalModel(chunk, v, rng, ehr_signal) for v in VITALS}

    # vital signs, charted together about hourly; arterial line or cuff pressures
    art = chunk.ventilated | (lab["shock"] > 0) | (rng.random(n) < 0.15)
    s, t = schedule(rng, start, end, rng.uniform(0.8, 1.2, n), p_keep=0.97)
    sbp, dbp = models["sbp"](s, t), models["dbp"](s, t)
    dbp = np.minimum(dbp, sbp - 15)
    mbp = (sbp + 2 * dbp) / 3 + rng.normal(0, 2, len(s))
    ids = np.where(art[s], 0, 1)
    for items, values in (((220050, 220179), sbp), ((220051, 220180), dbp), ((220052, 220181), mbp)):
        m = rng.random(len(s)) < 0.97
        buf.add(s[m], np.asarray(items)[ids[m]], t[m], np.round(values[m]))
    cuff_s, cuff_t = schedule(rng, start, end, 4.0, active=art, p_keep=0.8)  # cuff checks beside the a-line
    for item, v in ((220179, "sbp"), (220180, "dbp")):
        buf.add(cuff_s, item, cuff_t, np.round(models[v](cuff_s, cuff_t) + rng.normal(0, 4, len(cuff_s))))
    for item, v, low, high in ((220045, "hr", 25, 220), (220277, "spo2", 60, 100)):
        m = rng.random(len(s)) < 0.98
        buf.add(s[m], item, t[m], np.round(np.clip(models[v](s[m], t[m]), low, high)))
    rr_item = np.where(chunk.ventilated, 224690, 220210)
    buf.add(s, rr_item[s], t, np.round(np.clip(models["rr"](s, t), 4, None)))

    # temperature every 4 h, °F in most units, °C in some (and a few switches)
    s, t = schedule(rng, start, end, 4.0, p_keep=0.9)
    celsius = models["temp"](s, t)
    use_c = (rng.random(n) < 0.15)[s] ^ (rng.random(len(s)) < 0.05)
    buf.add(s, np.where(use_c, 223762, 223761), t, np.where(use_c, celsius, celsius * 9 / 5 + 32))

    _chart_gcs(buf, chunk, rng, start, end, ehr_signal)

    # capillary refill (text only), right or left
    s, t = schedule(rng, start, end, 8.0, p_keep=0.85)
    abnormal = rng.random(len(s)) < _sigmoid(
        -2.5 + ehr_signal * (1.6 * lab["shock"][s] + 0.6 * chunk.acuity[s])
    )
    text = np.array([_TEXT_INDEX[mi.CAPILLARY_REFILL_VALUES[int(a)]] for a in (0, 1)])[abnormal.astype(int)]
    buf.add(s, np.where(rng.random(len(s)) < 0.5, 223951, 224308), t, np.full(len(s), np.nan), text)

    # FiO2 while on oxygen: percent, sometimes wrongly charted as a fraction
    on_o2 = chunk.ventilated | (
        rng.random(n) < _sigmoid(-1.2 + ehr_signal * (1.5 * lab["resp_failure"] + lab["pneumonia"]))
    )
    s, t = schedule(rng, start, end, np.where(chunk.ventilated, 2.0, 4.0), active=on_o2, p_keep=0.9)
    pct = 30 + ehr_signal * (15 * lab["resp_failure"][s] + 8 * chunk.acuity[s]) + rng.normal(0, 8, len(s))
    pct = np.clip(np.round(pct / 5) * 5, 21, 100)
    as_fraction = rng.random(len(s)) < 0.03
    buf.add(s, 223835, t, np.where(as_fraction, pct / 100, pct))

    # glucose: finger sticks (q6h diabetics, q12h others), serum daily, whole blood with some gases
    diabetic = (lab["dm"] + lab["dm_comp"]) > 0
    for item, every, p in (
        (225664, np.where(diabetic, 6.0, 12.0), 0.9),
        (220621, 24.0, 0.8),
        (226537, 24.0, 0.2),
    ):
        s, t = schedule(rng, start, end, every, p_keep=p)
        buf.add(s, item, t, np.round(np.clip(models["glucose"](s, t), 20, None)))

    # arterial pH for ventilated / shocked patients
    s, t = schedule(rng, start, end, 12.0, active=art, p_keep=0.6)
    buf.add(s, 223830, t, np.round(models["ph"](s, t), 2))

    # weights and heights
    s = np.arange(n)
    t = chunk.intime + (rng.uniform(0.5, 3.0, n) * HOUR).astype(np.int64)
    t -= t % MINUTE
    lbs = rng.random(n) < 0.3
    w = chunk.weight_kg + rng.normal(0, 1.0, n)
    buf.add(s, np.where(lbs, 226531, 226512), t, np.where(lbs, w * 2.20462, w))
    s2, t2 = schedule(rng, chunk.intime + 20 * HOUR, end, 24.0, active=rng.random(n) < 0.5, p_keep=0.9)
    buf.add(s2, 224639, t2, chunk.weight_kg[s2] + rng.normal(0, 1.2, len(s2)))
    kind = rng.random(n)
    t = chunk.intime + (rng.uniform(0.5, 6.0, n) * HOUR).astype(np.int64)
    t -= t % MINUTE
    cm, inch = kind < 0.6, (kind >= 0.6) & (kind < 0.8)
    buf.add(s[cm], 226730, t[cm], np.round(chunk.height_cm[cm]))
    buf.add(s[inch], 226707, t[inch], np.round(chunk.height_cm[inch] / 2.54))

    # items that feed no variable
    s, t = schedule(rng, start, end, 12.0, p_keep=0.9)
    buf.add(s, 220046, t, np.where(rng.random(len(s)) < 0.5, 120.0, 130.0))
    s, t = schedule(rng, start, end, 4.0, p_keep=0.8)
    af = lab["dysrhythmia"][s] > 0
    sinus = np.where(rng.random(len(s)) < 0.2, "ST (Sinus Tachycardia)", "SR (Sinus Rhythm)")
    rhythm = np.where(af & (rng.random(len(s)) < 0.6), "AF (Atrial Fibrillation)", sinus)
    buf.add(s, 220048, t, np.full(len(s), np.nan), np.array([_TEXT_INDEX[r] for r in rhythm], np.int64))

    _spo2_fraction_and_errors(buf, rng, error_rate)
    return buf


def _chart_gcs(
    buf: EventBuffer,
    chunk: StayChunk,
    rng: np.random.Generator,
    start: np.ndarray,
    end: np.ndarray,
    ehr_signal: float,
) -> None:
    """Eye, verbal and motor responses charted together every ~4 h as MIMIC-IV text values."""
    n = len(chunk.index)
    s, t = schedule(rng, start, end, 4.0, p_keep=0.85)
    lab = chunk.labels
    deficit = ehr_signal * (
        3.5 * lab["stroke"][s] + 1.3 * np.clip(chunk.acuity[s], 0, None) + 5.0 * chunk.dying(s, t, 24.0)
    )
    sedated = chunk.ventilated[s] & (rng.random(len(s)) < 0.85)
    deficit = deficit + np.where(sedated, rng.uniform(3, 8, len(s)), 0) + np.abs(rng.normal(0, 0.8, len(s)))
    deficit += rng.normal(0, 0.8, n)[s]
    total_deficit = np.clip(np.round(deficit), 0, 12)
    eye_def = np.clip(np.round(total_deficit * 3 / 12 + rng.normal(0, 0.4, len(s))), 0, 3)
    motor_def = np.clip(np.round(total_deficit * 5 / 12 + rng.normal(0, 0.4, len(s))), 0, 5)
    verbal_def = np.clip(total_deficit - eye_def - motor_def, 0, 4)
    eye, motor, verbal = 4 - eye_def, 6 - motor_def, 5 - verbal_def
    eye_text = np.array([_TEXT_INDEX[mi.GCS_EYE_VALUES[int(v)]] for v in eye])
    motor_text = np.array([_TEXT_INDEX[mi.GCS_MOTOR_VALUES[int(v)]] for v in motor])
    verbal_text = np.array([_TEXT_INDEX[mi.GCS_VERBAL_VALUES[int(v)]] for v in verbal])
    verbal_text = np.where(sedated, _TEXT_INDEX[mi.GCS_VERBAL_INTUBATED], verbal_text)
    verbal = np.where(sedated, 1, verbal)  # MIMIC-IV charts "No Response-ETT" with valuenum 1
    for item, num, text in (
        (220739, eye, eye_text),
        (223900, verbal, verbal_text),
        (223901, motor, motor_text),
    ):
        m = rng.random(len(s)) < 0.97
        buf.add(s[m], item, t[m], num[m].astype(np.float64), text[m].astype(np.int64))


def _spo2_fraction_and_errors(buf: EventBuffer, rng: np.random.Generator, error_rate: float) -> None:
    """SpO2 sometimes charted as a fraction; rare impossible values on the main vital items."""
    for item, values in zip(buf.itemid, buf.valuenum, strict=True):
        if item.size and item[0] == 220277:
            frac = rng.random(len(values)) < 0.005
            values[frac] = values[frac] / 100.0
        for j in np.flatnonzero(np.isin(item, list(IMPOSSIBLE)) & (rng.random(len(values)) < error_rate)):
            choices = IMPOSSIBLE[int(item[j])]
            values[j] = choices[int(rng.integers(len(choices)))]


def _previous_discharge(adm: dict[str, np.ndarray]) -> np.ndarray:
    """Per admission, the discharge time of the same subject's previous admission (int64 min if none)."""
    subject, admit, disch = adm["subject_id"], adm["admittime"], adm["dischtime"]
    order = np.lexsort((admit, subject))
    prev = np.full(len(subject), np.iinfo(np.int64).min, dtype=np.int64)
    same = subject[order][1:] == subject[order][:-1]
    prev[order[1:]] = np.where(same, disch[order][:-1], np.iinfo(np.int64).min)
    return prev


def lab_chunk(
    pop: Population, adm_index: np.ndarray, rng: np.random.Generator, ehr_signal: float
) -> tuple[EventBuffer, np.ndarray]:
    """Lab events of a chunk of admissions. Returns the events (``stay`` = position in ``adm_index``)
    and a boolean per event: True for outpatient labs drawn before the admission (no hadm_id)."""
    adm, st = pop.admissions, pop.stays
    n = len(adm_index)
    # the admission's clinical state is that of its first ICU stay; admissions without one are neutral
    first_stay = np.full(len(adm["hadm_id"]), -1)
    adm_with_stay, first_pos = np.unique(st["admission_index"], return_index=True)
    first_stay[adm_with_stay] = first_pos
    fs = first_stay[adm_index]
    has = fs >= 0
    lab = {k: np.where(has, v[np.maximum(fs, 0)], False).astype(np.float64) for k, v in pop.labels.items()}
    sev = np.where(has, st["acuity"][np.maximum(fs, 0)], -0.5)
    vent = np.where(has, st["ventilated"][np.maximum(fs, 0)], False)
    icu_in = np.where(has, st["intime"][np.maximum(fs, 0)], 0)
    icu_out = np.where(has, st["outtime"][np.maximum(fs, 0)], 0)
    start, end = adm["admittime"][adm_index], adm["dischtime"][adm_index]
    signal = ehr_signal
    buf = EventBuffer()
    outpatient = []

    def add(items_values: list[tuple[int, np.ndarray]], s: np.ndarray, t: np.ndarray, out: bool) -> None:
        for item, values in items_values:
            buf.add(s, item, t, values)
            outpatient.append(np.full(len(s), out))

    def chemistry(s: np.ndarray, t: np.ndarray, out: bool) -> None:
        m = len(s)
        glucose = (
            125 + signal * (60 * lab["dm_comp"][s] + 38 * lab["dm"][s] + 9 * sev[s]) + rng.normal(0, 25, m)
        )
        creat = 0.9 + signal * (1.6 * lab["arf"][s] + 1.4 * lab["ckd"][s]) + np.abs(rng.normal(0, 0.3, m))
        sodium = 139 - signal * 4 * lab["fluid"][s] + rng.normal(0, 3, m)
        hgb = 11.5 - signal * 2.2 * lab["gi_bleed"][s] + rng.normal(0, 1.3, m)
        add(
            [
                (50931, np.round(np.clip(glucose, 25, None))),
                (50912, np.round(creat, 1)),
                (50983, np.round(sodium)),
                (51222, np.round(hgb, 1)),
            ],
            s,
            t,
            out,
        )

    s, t = schedule(rng, start, end, 24.0, p_keep=0.95)
    chemistry(s, t, False)
    s, t = schedule(rng, icu_in, icu_out, 12.0, active=has, p_keep=0.8)
    chemistry(s, t, False)
    # arterial blood gases (pH + glucose on one specimen) for ventilated patients, occasionally others
    gas = has & (vent | (rng.random(n) < 0.2))
    s, t = schedule(rng, icu_in, icu_out, np.where(vent, 6.0, 12.0), active=gas, p_keep=0.8)
    ph = (
        7.40
        + signal
        * (-0.08 * lab["shock"][s] - 0.04 * lab["arf"][s] - 0.05 * lab["resp_failure"][s] - 0.025 * sev[s])
        + rng.normal(0, 0.035, len(s))
    )
    gas_glucose = 125 + signal * (50 * lab["dm_comp"][s] + 30 * lab["dm"][s]) + rng.normal(0, 25, len(s))
    add([(50820, np.round(ph, 2)), (50809, np.round(np.clip(gas_glucose, 25, None)))], s, t, False)
    # outpatient labs in the month before some admissions (no hadm_id)
    k = np.where(rng.random(n) < 0.2, rng.integers(1, 4, n), 0)
    s = np.repeat(np.arange(n), k)
    t = start[s] - (rng.uniform(1, 30, len(s)) * 24 * HOUR).astype(np.int64)
    t -= t % MINUTE
    after = t > _previous_discharge(adm)[adm_index][s]  # not inside the subject's previous admission
    chemistry(s[after], t[after], True)
    return buf, np.concatenate(outpatient) if outpatient else np.zeros(0, bool)


def text_column(codes: np.ndarray) -> pl.Series:
    """Strings for the indices into TEXT_VALUES followed by FILLER_TEXTS (null where the index is -1)."""
    lookup = pl.Series("t", TEXT_VALUES + FILLER_TEXTS, dtype=pl.String)
    safe = pl.Series("i", np.maximum(codes, 0), dtype=pl.UInt32)
    out = lookup.gather(safe)
    return out.set(pl.Series(codes < 0), None) if (codes < 0).any() else out


def format_numbers(values: np.ndarray, itemids: np.ndarray) -> tuple[np.ndarray, pl.Series]:
    """Round ``values`` to each item's charting precision; return (valuenum, value text).

    Integers are written without a decimal point, as in the MIMIC CSV files.
    """
    decimals = np.zeros(len(values), np.int64)
    for item, d in (DECIMALS | FILLER_DECIMALS).items():
        decimals[itemids == item] = d
    small = np.abs(values) < 1.5  # fractions (FiO2 0.4, SpO2 0.97) keep two decimals
    decimals = np.where(small & (decimals < 2), 2, decimals)
    rounded = np.round(values * 10.0**decimals) / 10.0**decimals
    text = pl.Series("v", rounded).cast(pl.String).str.replace(r"\.0$", "")
    return rounded, text


# ---- filler rows: items that feed no variable (see the module docstring) ----


MIMIC_IV_FILLER_RATIO = 5.07


@dataclass(frozen=True)
class FillerItem:
    itemid: int
    label: str
    category: str
    param_type: str  # "Text" | "Numeric" | "Checkbox"
    weight: int  # rows in the MIMIC-IV demo
    texts: tuple[str, ...] = ()  # charted texts (Text items); with ``numbers``: their valuenum
    numbers: tuple[float, ...] = ()  # valuenum of the texts, or (mean, sd, low, high) of Numeric items
    unit: str | None = None
    decimals: int = 0


BRADEN = {  # item id -> label, texts of the scores 1, 2, ...
    224054: ("Braden Sensory Perception",
             ("Completely Limited", "Very Limited", "Slight Impairment", "No Impairment")),
    224055: ("Braden Moisture", ("Consistently Moist", "Moist", "Occasionally Moist", "Rarely Moist")),
    224056: ("Braden Activity", ("Bedfast", "Chairfast", "Walks Occasionally", "Walks Frequently")),
    224057: ("Braden Mobility",
             ("Completely Immobile", "Very Limited", "Slight Limitations", "No Limitations")),
    224058: ("Braden Nutrition", ("Very Poor", "Probably Inadequate", "Adequate", "Excellent")),
    224059: ("Braden Friction/Shear", ("Problem", "Potential Problem", "No Apparent Problem")),
}  # fmt: skip
BRADEN_ROWS = {224054: 1662, 224055: 1659, 224056: 1659, 224057: 1659, 224058: 1656, 224059: 1656}


def _text(itemid: int, label: str, category: str, rows: int, *texts: str) -> FillerItem:
    return FillerItem(itemid, label, category, "Text", rows, texts)


def _scored(
    itemid: int, label: str, category: str, rows: int, texts: tuple[str, ...], scores: tuple
) -> FillerItem:
    return FillerItem(itemid, label, category, "Text", rows, texts, tuple(float(x) for x in scores))


def _checkbox(itemid: int, label: str, rows: int) -> FillerItem:
    return FillerItem(itemid, label, "Alarms", "Checkbox", rows, ("1",), (1.0,))


def _setting(
    itemid: int, label: str, category: str, rows: int, unit: str, *spread: float, decimals: int = 0
) -> FillerItem:
    """A numeric item: ``spread`` = (mean, sd, low, high) of the charted value."""
    return FillerItem(itemid, label, category, "Numeric", rows, (), spread, unit, decimals)


LUNG = ("Clear", "Diminished", "Crackles", "Rhonchi", "Coarse", "Absent")
PUPIL_SIZE = ("2 mm", "3 mm", "4 mm", "5 mm")
PUPIL_RESPONSE = ("Brisk", "Sluggish", "Non-reactive")
RASS = (
    " 0  Alert and calm",
    "-1 Awakens to voice (eye opening/contact) > 10 sec",
    "-2 Light sedation, briefly awakens to voice (eye opening/contact) < 10 sec",
    "-3 Moderate sedation, movement or eye opening; No eye contact",
    "+1 Anxious, apprehensive, but not aggressive",
)
RESTRAINT, ROUTINE, PAIN, TREAT = (
    "Restraint/Support Systems",
    "Routine Vital Signs",
    "Pain/Sedation",
    "Treatments",
)

FILLER: tuple[FillerItem, ...] = (
    _text(227969, "Safety Measures", RESTRAINT, 19330,
          "Bed locked in low position", "Call light within reach", "Side rails x2", "Visual checks"),
    _text(220048, "Heart Rhythm", ROUTINE, 12460, "SR (Sinus Rhythm)", "ST (Sinus Tachycardia)",
          "AF (Atrial Fibrillation)", "SB (Sinus Bradycardia)"),
    _text(224650, "Ectopy Type 1", ROUTINE, 11044, "None", "PVC's", "PAC's"),
    _text(227958, "Less Restrictive Measures", RESTRAINT, 7675, "Reorientation", "Diversional activity",
          "Bed alarm"),
    _text(223792, "Pain Management", PAIN, 5371, "Repositioned", "IV Bolus", "PO/PR", "None"),
    _text(224080, "Head of Bed", TREAT, 5124, "30 Degrees", "45 Degrees", "Flat"),
    _text(224082, "Turn", TREAT, 5045, "Side to Side", "Self", "Refused"),
    _text(224086, "Activity Tolerance", TREAT, 4863, "Tolerated well", "Fatigued"),
    _text(224093, "Position", TREAT, 4742, "Left Side", "Right Side", "Supine", "Sitting"),
    _text(224642, "Temperature Site", ROUTINE, 3794, "Oral", "Axillary", "Blood", "Tympanic", "Rectal"),
    _text(224073, "Education Topic", RESTRAINT, 3497, "Plan of care", "Medications", "Pain management"),
    _text(224087, "Therapeutic Bed", TREAT, 3346, "Standard", "Low air loss", "Kinetic"),
    _text(223781, "Pain Present", PAIN, 3330, "No", "Yes", "Unable to Determine"),
    _text(223795, "Pain Assessment Method", PAIN, 3310, "Numeric", "Verbal", "CPOT"),
    _text(224089, "Anti Embolic Device", TREAT, 3196, "Pneumoboots", "TEDs", "None"),
    _text(226732, "O2 Delivery Device(s)", "Respiratory", 3145, "None", "Nasal cannula", "Endotracheal tube",
          "Face tent", "High flow neb"),
    _text(223987, "RLL Lung Sounds", "Pulmonary", 3104, *LUNG),
    _text(223989, "LLL Lung Sounds", "Pulmonary", 3070, *LUNG),
    _text(223986, "RUL Lung Sounds", "Pulmonary", 3047, *LUNG),
    _text(223988, "LUL Lung Sounds", "Pulmonary", 3015, *LUNG),
    _text(227944, "Side Rails", RESTRAINT, 3032, "2 Rails Up", "4 Rails Up"),
    _checkbox(224641, "Alarms On", 3020),
    _checkbox(224168, "Parameters Checked", 2970),
    _text(225054, "Anti Embolic Device Status", TREAT, 2902, "On", "Off"),
    _text(224003, "Abdominal Assessment", "GI/GU", 2898, "Soft", "Distended", "Firm", "Tender"),
    _text(223783, "Pain Location", PAIN, 2780, "Abdominal", "Back", "Chest", "Incision"),
    _scored(228096, "Richmond-RAS Scale", PAIN, 2751, RASS, (0, -1, -2, -3, 1)),
    _text(224001, "Diet Type", "GI/GU", 2570, "NPO", "Regular", "Cardiac", "Diabetic", "Tube Feeding"),
    _text(223907, "Pupil Size Right", "Neurological", 2546, *PUPIL_SIZE),
    _text(224733, "Pupil Size Left", "Neurological", 2545, *PUPIL_SIZE),
    _text(227121, "Pupil Response Right", "Neurological", 2538, *PUPIL_RESPONSE),
    _text(227288, "Pupil Response Left", "Neurological", 2535, *PUPIL_RESPONSE),
    _text(223999, "Oral Cavity", "GI/GU", 2471, "Pink/Moist", "Dry", "Coated"),
    _checkbox(228305, "ST Segment Monitoring On", 2383),
    _text(224084, "Activity", TREAT, 2379, "Bed", "Chair", "Dangle", "Ambulate"),
    _text(224015, "Urine Source", "GI/GU", 2359, "Foley", "Voiding", "Condom Cath"),
    *(_scored(itemid, label, "Skin - Assessment", BRADEN_ROWS[itemid], texts, range(1, len(texts) + 1))
      for itemid, (label, texts) in BRADEN.items()),
    _setting(220339, "PEEP set", "Respiratory", 1447, "cmH2O", 6.0, 2.5, 0.0, 22.0),
    _setting(220074, "Central Venous Pressure", "Hemodynamics", 1386, "mmHg", 11.0, 4.0, -4.0, 30.0),
    _setting(224687, "Minute Volume", "Respiratory", 1359, "L/min", 9.0, 2.5, 2.0, 25.0, decimals=1),
    _setting(224697, "Mean Airway Pressure", "Respiratory", 1342, "cmH2O", 9.0, 3.0, 3.0, 25.0),
    _setting(224685, "Tidal Volume (observed)", "Respiratory", 1331, "mL", 460.0, 90.0, 150.0, 900.0),
    _setting(224695, "Peak Insp. Pressure", "Respiratory", 1319, "cmH2O", 19.0, 6.0, 5.0, 45.0),
    _setting(220292, "Minute Volume Alarm - Low", "Alarms", 1303, "L/min", 5.0, 1.0, 2.0, 10.0),
    _setting(220293, "Minute Volume Alarm - High", "Alarms", 1297, "L/min", 18.0, 3.0, 10.0, 30.0),
    _setting(223873, "Paw High", "Alarms", 1296, "cmH2O", 40.0, 4.0, 30.0, 60.0),
    _setting(220046, "Heart rate Alarm - High", "Alarms", 1217, "bpm", 130.0, 10.0, 100.0, 170.0),
    _setting(223770, "O2 Saturation Pulseoxymetry Alarm - Low", "Alarms", 1212, "%", 90.0, 2.0, 85.0, 95.0),
    _setting(223769, "O2 Saturation Pulseoxymetry Alarm - High", "Alarms", 1208, "%", 100, 0.5, 98, 100),
    _setting(220047, "Heart Rate Alarm - Low", "Alarms", 1208, "bpm", 50.0, 5.0, 35.0, 60.0),
    _setting(224161, "Resp Alarm - High", "Alarms", 1187, "insp/min", 35.0, 4.0, 25.0, 45.0),
    _setting(224162, "Resp Alarm - Low", "Alarms", 1187, "insp/min", 8.0, 1.0, 5.0, 12.0),
)  # fmt: skip

FILLER_TEXTS: tuple[str, ...] = tuple(dict.fromkeys(t for item in FILLER for t in item.texts))
FILLER_DECIMALS = {item.itemid: item.decimals for item in FILLER if item.decimals}
FILLER_UNITS = {item.itemid: item.unit for item in FILLER if item.unit}
_BUILT_IN = {it.itemid for it in mi.ITEMS if it.linksto == "chartevents" and it.variable is None}
_FEEDING = np.array(sorted(it.itemid for it in mi.ITEMS if it.linksto == "chartevents" and it.variable))


def _check() -> None:
    ids = [item.itemid for item in FILLER]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate filler item id")
    feeding = set(_FEEDING.tolist())
    clash = [i for i in ids if i in feeding]
    if clash:
        raise ValueError(f"filler items {clash} feed a variable")


_check()


def filler_count(itemids: np.ndarray, ratio: float) -> int:
    """Filler rows to add to a chunk with these item ids: ``ratio`` per row of a variable's item, less the
    rows of items without variable the chunk already has (heart rhythm, heart rate alarm)."""
    feeding = int(np.isin(itemids, _FEEDING).sum())
    built_in = int(np.isin(itemids, list(_BUILT_IN)).sum())
    return max(round(ratio * feeding) - built_in, 0)


def filler_rows(
    stay: np.ndarray,
    time: np.ndarray,
    itemids: np.ndarray,
    ratio: float,
    rng: np.random.Generator,
    text_base: int,
) -> dict[str, np.ndarray]:
    """Filler events for one chunk whose events are (stay, time, itemids): columns stay, itemid, time,
    valuenum (NaN for texts without number) and text (index into the text lookup, offset by
    ``text_base``; -1 for numbers). Each row copies the stay and time of a random row of a variable."""
    n = filler_count(itemids, ratio)
    source = np.flatnonzero(np.isin(itemids, _FEEDING))
    if not n or not len(source):
        return {k: np.zeros(0, t) for k, t in (("stay", np.int64), ("itemid", np.int64), ("time", np.int64),
                                               ("valuenum", np.float64), ("text", np.int64))}  # fmt: skip
    picked = source[rng.integers(0, len(source), n)]
    weights = np.array([item.weight for item in FILLER], dtype=np.float64)
    which = rng.choice(len(FILLER), size=n, p=weights / weights.sum())
    u = rng.random(n)
    valuenum = np.full(n, np.nan)
    text = np.full(n, -1, dtype=np.int64)
    text_index = {t: i for i, t in enumerate(FILLER_TEXTS)}
    for k, item in enumerate(FILLER):
        rows = np.flatnonzero(which == k)
        if not len(rows):
            continue
        if item.texts:
            choice = np.minimum((u[rows] * len(item.texts)).astype(np.int64), len(item.texts) - 1)
            codes = np.array([text_base + text_index[t] for t in item.texts])
            text[rows] = codes[choice]
            if item.numbers:
                valuenum[rows] = np.asarray(item.numbers)[choice]
        else:
            mean, sd, low, high = item.numbers
            valuenum[rows] = np.clip(mean + sd * rng.standard_normal(len(rows)), low, high)
    return {
        "stay": stay[picked],
        "itemid": np.array([item.itemid for item in FILLER], dtype=np.int64)[which],
        "time": time[picked],
        "valuenum": valuenum,
        "text": text,
    }
