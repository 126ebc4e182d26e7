"""The synthetic ICU population: patients, admissions, ICU stays, latent clinical state and outcomes.

Generative model (documented for users in docs/synthetic_data.md):

* each patient has three chronic factors (cardio-metabolic, pulmonary, renal), which drive the chronic
  phenotypes (diabetes, hypertension, lipids, coronary disease, arrhythmia, conduction, CKD, COPD);
* each ICU stay has seven acute factors (infection, respiratory, cardiac, renal, GI/liver, neuro,
  surgical), correlated with the chronic ones, which drive the acute phenotypes;
* a severity score mixes the dangerous phenotypes, age and an independent physiological component;
  in-hospital death follows a logistic model of severity calibrated to the requested mortality.

Everything here is columnar (numpy) so that 50,000 stays take a fraction of a second; the only Python
loop builds the admission/stay skeleton and the timeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from omnifuse.cohorts.phenotypes import PhenotypeGroup

MINUTE = 60
HOUR = 3600
DAY = 24 * HOUR
# 2110-01-01T00:00:00 as seconds since the Unix epoch (MIMIC shifts dates into 2100-2200).
EPOCH_2110 = int(np.datetime64("2110-01-01T00:00:00", "s").astype(np.int64))
YEAR = int(365.25 * DAY)

CHRONIC_FACTORS = ("cardiometabolic", "pulmonary", "renal_chronic")
ACUTE_FACTORS = ("infection", "respiratory", "cardiac", "renal", "gi_liver", "neuro", "surgical")

# Short keys for the 25 benchmark groups (matched on the group name's first words).
PHENOTYPE_KEYS = {
    "Acute and unspecified renal failure": "arf",
    "Acute cerebrovascular disease": "stroke",
    "Acute myocardial infarction": "ami",
    "Cardiac dysrhythmias": "dysrhythmia",
    "Chronic kidney disease": "ckd",
    "Chronic obstructive pulmonary disease and bronchiectasis": "copd",
    "Complications of surgical procedures or medical care": "complication",
    "Conduction disorders": "conduction",
    "Congestive heart failure; nonhypertensive": "chf",
    "Coronary atherosclerosis and other heart disease": "cad",
    "Diabetes mellitus with complications": "dm_comp",
    "Diabetes mellitus without complication": "dm",
    "Disorders of lipid metabolism": "lipid",
    "Essential hypertension": "htn",
    "Fluid and electrolyte disorders": "fluid",
    "Gastrointestinal hemorrhage": "gi_bleed",
    "Hypertension with complications and secondary hypertension": "htn_comp",
    "Other liver diseases": "liver",
    "Other lower respiratory disease": "lower_resp",
    "Other upper respiratory disease": "upper_resp",
    "Pleurisy; pneumothorax; pulmonary collapse": "pleurisy",
    "Pneumonia (except that caused by tuberculosis or sexually transmitted disease)": "pneumonia",
    "Respiratory failure; insufficiency; arrest (adult)": "resp_failure",
    "Septicemia (except in labor)": "sepsis",
    "Shock": "shock",
}

# key -> (target prevalence among ICU stays, {factor: loading}); chronic groups load on patient factors.
PHENOTYPE_MODEL: dict[str, tuple[float, dict[str, float]]] = {
    "arf": (0.28, {"renal": 1.8, "infection": 0.5, "renal_chronic": 0.6}),
    "stroke": (0.08, {"neuro": 2.2}),
    "ami": (0.10, {"cardiac": 2.0, "cardiometabolic": 0.6}),
    "dysrhythmia": (0.33, {"cardiac": 0.8, "cardiometabolic": 0.9, "age": 0.8}),
    "ckd": (0.14, {"renal_chronic": 2.2}),
    "copd": (0.12, {"pulmonary": 2.2}),
    "complication": (0.18, {"surgical": 2.0}),
    "conduction": (0.07, {"cardiometabolic": 0.9, "age": 0.6}),
    "chf": (0.24, {"cardiac": 1.4, "cardiometabolic": 0.9}),
    "cad": (0.28, {"cardiometabolic": 1.6, "age": 0.5}),
    "dm_comp": (0.10, {"cardiometabolic": 1.6, "renal_chronic": 1.0}),
    "dm": (0.20, {"cardiometabolic": 1.5}),
    "lipid": (0.33, {"cardiometabolic": 1.3, "age": 0.3}),
    "htn": (0.38, {"cardiometabolic": 1.1, "age": 0.4}),
    "fluid": (0.38, {"renal": 1.0, "gi_liver": 0.8, "infection": 0.5}),
    "gi_bleed": (0.06, {"gi_liver": 2.1}),
    "htn_comp": (0.15, {"cardiometabolic": 1.0, "renal_chronic": 1.6}),
    "liver": (0.08, {"gi_liver": 1.9}),
    "lower_resp": (0.07, {"respiratory": 1.1}),
    "upper_resp": (0.04, {"respiratory": 0.6}),
    "pleurisy": (0.08, {"respiratory": 1.5}),
    "pneumonia": (0.15, {"infection": 1.3, "respiratory": 1.5}),
    "resp_failure": (0.20, {"respiratory": 2.0, "neuro": 0.5}),
    "sepsis": (0.15, {"infection": 2.1}),
    "shock": (0.08, {"infection": 1.5, "cardiac": 1.0}),
}
# Severity: how much each dangerous phenotype adds (before standardisation).
SEVERITY_WEIGHTS = {
    "sepsis": 0.8,
    "shock": 1.1,
    "resp_failure": 0.9,
    "arf": 0.5,
    "ami": 0.5,
    "stroke": 0.7,
    "gi_bleed": 0.4,
    "liver": 0.3,
}
# Independent components of severity (weights before standardisation; the phenotype part has sd ~0.9).
SEVERITY_COMPONENTS = {"physiology": 0.8, "lung_injury": 1.8, "unobserved": 0.5}
# Diffuse lung injury: from the acute respiratory and infection factors plus its own part (standardised).
LUNG_INJURY_LOADINGS = {"respiratory": 0.5, "infection": 0.3, "own": 1.0}
MORTALITY_SEVERITY_SLOPE = 2.6

CAREUNITS = (
    "Medical Intensive Care Unit (MICU)",
    "Surgical Intensive Care Unit (SICU)",
    "Cardiac Vascular Intensive Care Unit (CVICU)",
    "Medical/Surgical Intensive Care Unit (MICU/SICU)",
    "Coronary Care Unit (CCU)",
    "Trauma SICU (TSICU)",
    "Neuro Surgical Intensive Care Unit (Neuro SICU)",
)
CAREUNIT_SHARES = (0.22, 0.12, 0.15, 0.18, 0.12, 0.11, 0.10)
ANCHOR_YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022")


@dataclass(frozen=True)
class PopulationOptions:
    n_stays: int
    seed: int
    mortality: float
    transfer_rate: float
    multi_stay_rate: float
    minor_rate: float


@dataclass
class Population:
    """Columnar tables; times are int64 seconds since the Unix epoch (in MIMIC's shifted years)."""

    patients: dict[str, np.ndarray]
    admissions: dict[str, np.ndarray]
    stays: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]  # phenotype key -> (n_stays,) bool; plus per-admission coding
    phenotype_keys: tuple[str, ...]

    @property
    def n_stays(self) -> int:
        return len(self.stays["stay_id"])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrate_intercept(linear: np.ndarray, target: float) -> float:
    """Intercept b such that mean(sigmoid(b + linear)) == target (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _sigmoid(mid + linear).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _unique_ids(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """``n`` distinct sorted integers in [low, high)."""
    ids = np.unique(rng.integers(low, high, size=int(n * 1.2) + 16))
    while len(ids) < n:
        ids = np.unique(np.concatenate([ids, rng.integers(low, high, size=n)]))
    return np.sort(rng.choice(ids, size=n, replace=False))


def _skeleton(opts: PopulationOptions, rng: np.random.Generator) -> dict[str, list]:
    """Patients with their admissions (ICU or not) and the number of ICU stays of each admission."""
    sk: dict[str, list] = {k: [] for k in ("adm_patient", "adm_n_stays", "pat_n_adm")}
    n_stays = 0
    target = int(opts.n_stays * 1.25) + 20  # deaths later truncate some follow-up admissions
    while n_stays < target:
        n_icu = 1 + int(rng.random() < 0.13) + int(rng.random() < 0.03)
        n_other = int(rng.poisson(0.5))
        kinds = [1] * n_icu + [0] * n_other
        rng.shuffle(kinds)
        pid = len(sk["pat_n_adm"])
        sk["pat_n_adm"].append(len(kinds))
        for is_icu in kinds:
            k = (2 if rng.random() < opts.multi_stay_rate else 1) if is_icu else 0
            sk["adm_patient"].append(pid)
            sk["adm_n_stays"].append(k)
            n_stays += k
    return sk


def build_population(opts: PopulationOptions, groups: list[PhenotypeGroup]) -> Population:
    """Draw the whole population: deterministic for ``opts.seed``."""
    from omnifuse.synth.rng import keyed_rng

    keys = tuple(PHENOTYPE_KEYS.get(g.name, "") for g in groups)
    if "" in keys or len(set(keys)) != len(PHENOTYPE_KEYS):
        unknown = [g.name for g, k in zip(groups, keys, strict=True) if not k]
        raise ValueError(
            "the synthetic hospital needs the 25 mimic3-benchmarks phenotype groups; "
            f"unrecognised or missing groups: {unknown or sorted(set(PHENOTYPE_KEYS.values()) - set(keys))}"
        )
    rng = keyed_rng(opts.seed, "population")
    sk = _skeleton(opts, rng)
    n_pat = len(sk["pat_n_adm"])
    adm_patient = np.asarray(sk["adm_patient"], dtype=np.int64)
    adm_n_stays = np.asarray(sk["adm_n_stays"], dtype=np.int64)
    n_adm = len(adm_patient)

    # ---- patients ----
    minor = rng.random(n_pat) < opts.minor_rate
    age = np.where(minor, rng.integers(16, 18, n_pat), np.clip(rng.normal(64, 16, n_pat), 18, 91).astype(int))
    gender = np.where(rng.random(n_pat) < 0.44, "F", "M")
    anchor_year = rng.integers(2110, 2190, n_pat)
    anchor_group = rng.integers(0, len(ANCHOR_YEAR_GROUPS), n_pat)
    age_z = (age - 64.0) / 16.0
    chronic = rng.normal(size=(n_pat, len(CHRONIC_FACTORS))) + 0.35 * age_z[:, None]
    height_cm = np.where(gender == "F", rng.normal(162, 7, n_pat), rng.normal(176, 7.5, n_pat))
    weight_kg = np.clip(rng.normal(0, 1, n_pat) * 17 + (height_cm - 100) * 1.0 + 10 * chronic[:, 0], 38, 210)

    # ---- ICU stays (acute factors), expanded from admissions ----
    stay_adm = np.repeat(np.arange(n_adm), adm_n_stays)
    stay_pat = adm_patient[stay_adm]
    n_st = len(stay_adm)
    acute = rng.normal(size=(n_st, len(ACUTE_FACTORS)))
    acute[:, 1] += 0.5 * acute[:, 0] + 0.35 * chronic[stay_pat, 1]  # respiratory <- infection, pulmonary
    acute[:, 2] += 0.45 * chronic[stay_pat, 0]  # cardiac <- cardio-metabolic
    acute[:, 3] += 0.45 * chronic[stay_pat, 2] + 0.3 * acute[:, 0]  # renal <- CKD, infection
    factors = {name: chronic[stay_pat, i] for i, name in enumerate(CHRONIC_FACTORS)}
    factors.update({name: acute[:, i] for i, name in enumerate(ACUTE_FACTORS)})
    factors["age"] = age_z[stay_pat]

    labels: dict[str, np.ndarray] = {}
    for key, (prevalence, loadings) in PHENOTYPE_MODEL.items():
        linear = sum(w * factors[f] for f, w in loadings.items())
        if key in ("dm", "dm_comp", "lipid", "htn", "htn_comp", "cad", "conduction", "ckd", "copd"):
            # chronic: the condition belongs to the patient; each admission codes it with p = 0.88
            p_lin = linear + rng.normal(0, 0.4, n_st)
            b = _calibrate_intercept(p_lin, prevalence / 0.88)
            pat_has = np.zeros(n_pat, bool)
            first = np.unique(stay_pat, return_index=True)[1]
            pat_has[stay_pat[first]] = rng.random(len(first)) < _sigmoid(b + p_lin[first])
            labels[key] = pat_has[stay_pat] & (rng.random(n_st) < 0.88)
        else:
            b = _calibrate_intercept(linear, prevalence)
            labels[key] = rng.random(n_st) < _sigmoid(b + linear)
    labels["dm"] &= ~labels["dm_comp"]
    labels["htn"] &= ~labels["htn_comp"]

    # Severity = dangerous phenotypes + age + three independent components, each seen by other data:
    # physiological derangement (charted vitals and labs), diffuse lung injury (bilateral opacities on the
    # chest film; hypoxaemia in the chart only weakly) and an unobserved remainder.
    physiology = rng.normal(size=n_st)
    lung_injury = (
        LUNG_INJURY_LOADINGS["respiratory"] * acute[:, 1] + LUNG_INJURY_LOADINGS["infection"] * (acute[:, 0])
    )
    lung_injury = lung_injury + rng.normal(size=n_st) * LUNG_INJURY_LOADINGS["own"]
    lung_injury = (lung_injury - lung_injury.mean()) / lung_injury.std()
    unobserved = rng.normal(size=n_st)
    from_labels = sum(w * labels[k].astype(float) for k, w in SEVERITY_WEIGHTS.items())
    from_labels = from_labels + 0.35 * factors["age"]
    acuity = from_labels + SEVERITY_COMPONENTS["physiology"] * physiology
    severity = (
        acuity
        + SEVERITY_COMPONENTS["lung_injury"] * lung_injury
        + SEVERITY_COMPONENTS["unobserved"] * unobserved
    )
    severity = (severity - severity.mean()) / severity.std()
    acuity = (acuity - acuity.mean()) / acuity.std()  # the part of severity the chart shows
    ventilated = rng.random(n_st) < _sigmoid(
        -1.3 + 1.8 * labels["resp_failure"] + 0.9 * severity + 0.6 * labels["stroke"] + 0.5 * lung_injury
    )

    # ---- outcome: an admission's death follows the severity of its last ICU stay ----
    last_stay_of_adm = np.cumsum(adm_n_stays) - 1
    icu_adm = adm_n_stays > 0
    sev_adm = severity[last_stay_of_adm[icu_adm]]
    b_mort = _calibrate_intercept(MORTALITY_SEVERITY_SLOPE * sev_adm, opts.mortality)
    adm_dies = np.zeros(n_adm, bool)
    adm_dies[icu_adm] = rng.random(icu_adm.sum()) < _sigmoid(b_mort + MORTALITY_SEVERITY_SLOPE * sev_adm)

    pop = _timeline(
        opts, rng, adm_patient, adm_n_stays, adm_dies, stay_adm, severity, anchor_year, minor, age
    )
    keep_adm, adm_times, stay_times, death = pop

    # ---- select patients until exactly n_stays stays remain ----
    keep_stays = keep_adm[stay_adm]
    pat_stays = np.bincount(stay_pat[keep_stays], minlength=n_pat)
    chosen = np.zeros(n_pat, bool)
    total = 0
    for p in range(n_pat):
        k = pat_stays[p]
        if k and total + k <= opts.n_stays:
            chosen[p] = True
            total += k
        if total == opts.n_stays:
            break
    if total < opts.n_stays:  # pragma: no cover - the skeleton is drawn with a 25 % surplus
        raise RuntimeError("population skeleton too small; please report this")
    adm_sel = keep_adm & chosen[adm_patient]
    stay_sel = adm_sel[stay_adm]
    pat_sel = chosen

    # ---- ids ----
    id_rng = keyed_rng(opts.seed, "ids")
    subject_ids = _unique_ids(id_rng, int(pat_sel.sum()), 10_000_000, 20_000_000)
    hadm_ids = id_rng.permutation(_unique_ids(id_rng, int(adm_sel.sum()), 20_000_000, 30_000_000))
    stay_ids = id_rng.permutation(_unique_ids(id_rng, int(stay_sel.sum()), 30_000_000, 40_000_000))
    pat_map = np.full(n_pat, -1)
    pat_map[pat_sel] = np.arange(pat_sel.sum())
    adm_map = np.full(n_adm, -1)
    adm_map[adm_sel] = np.arange(adm_sel.sum())

    sel_pat = np.flatnonzero(pat_sel)
    dod = np.full(n_pat, -1, dtype=np.int64)
    dod[death["patient"]] = death["time"]
    patients = {
        "subject_id": subject_ids,
        "gender": gender[sel_pat],
        "anchor_age": age[sel_pat],
        "anchor_year": anchor_year[sel_pat],
        "anchor_year_group": np.asarray(ANCHOR_YEAR_GROUPS)[anchor_group[sel_pat]],
        "dod": dod[sel_pat],
        "height_cm": height_cm[sel_pat],
        "weight_kg": weight_kg[sel_pat],
        "icd10_from": _icd10_switch(anchor_year[sel_pat], anchor_group[sel_pat]),
    }
    sel_adm = np.flatnonzero(adm_sel)
    admissions = {
        "subject_id": subject_ids[pat_map[adm_patient[sel_adm]]],
        "hadm_id": hadm_ids,
        "patient_index": pat_map[adm_patient[sel_adm]],
        "n_stays": adm_n_stays[sel_adm],
        **{k: v[sel_adm] for k, v in adm_times.items()},
    }
    sel_st = np.flatnonzero(stay_sel)
    anchor_start = EPOCH_2110 + (anchor_year[stay_pat] - 2110) * YEAR
    age_at_stay = age[stay_pat] + (stay_times["intime"] - anchor_start) // YEAR
    stays = {
        "subject_id": subject_ids[pat_map[stay_pat[sel_st]]],
        "hadm_id": hadm_ids[adm_map[stay_adm[sel_st]]],
        "stay_id": stay_ids,
        "admission_index": adm_map[stay_adm[sel_st]],
        "patient_index": pat_map[stay_pat[sel_st]],
        "severity": severity[sel_st],
        "acuity": acuity[sel_st],
        "physiology": physiology[sel_st],
        "lung_injury": lung_injury[sel_st],
        "ventilated": ventilated[sel_st],
        "age": age_at_stay[sel_st],
        **{f"factor_{k}": v[sel_st] for k, v in factors.items()},
        **{k: v[sel_st] for k, v in stay_times.items()},
    }
    return Population(
        patients=patients,
        admissions=admissions,
        stays=stays,
        labels={k: v[sel_st] for k, v in labels.items()},
        phenotype_keys=keys,
    )


def _icd10_switch(anchor_year: np.ndarray, anchor_group: np.ndarray) -> np.ndarray:
    """Shifted time (s) after which a patient's diagnoses are coded in ICD-10.

    MIMIC-IV switched to ICD-10 in October 2015; the anchor year group says where the patient's shifted
    anchor year falls in real time, so the switch date follows from it.
    """
    real_start = np.array([2008, 2011, 2014, 2017, 2020])[anchor_group]
    years_to_switch = 2015.75 - (real_start + 1.5)
    return EPOCH_2110 + ((anchor_year - 2110 + years_to_switch) * YEAR).astype(np.int64)


def _timeline(
    opts: PopulationOptions,
    rng: np.random.Generator,
    adm_patient: np.ndarray,
    adm_n_stays: np.ndarray,
    adm_dies: np.ndarray,
    stay_adm: np.ndarray,
    severity: np.ndarray,
    anchor_year: np.ndarray,
    minor: np.ndarray,
    age: np.ndarray,
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Admission and stay times; deaths; drops admissions after a patient's death."""
    n_adm, n_st = len(adm_patient), len(stay_adm)
    adm_t = {k: np.zeros(n_adm, np.int64) for k in ("admittime", "dischtime", "edregtime", "edouttime")}
    adm_t["deathtime"] = np.full(n_adm, -1, np.int64)
    adm_t["has_ed"] = np.zeros(n_adm, bool)
    adm_t["hospital_expire_flag"] = np.zeros(n_adm, np.int64)
    st_t = {k: np.zeros(n_st, np.int64) for k in ("intime", "outtime")}
    st_t["transfer"] = rng.random(n_st) < opts.transfer_rate
    st_t["careunit"] = rng.choice(len(CAREUNITS), size=n_st, p=CAREUNIT_SHARES)
    st_t["careunit2"] = (st_t["careunit"] + rng.integers(1, len(CAREUNITS), n_st)) % len(CAREUNITS)
    st_t["death_in_stay"] = np.zeros(n_st, bool)
    keep = np.ones(n_adm, bool)
    death_pat, death_time = [], []
    stays_of_adm = np.split(np.arange(n_st), np.cumsum(adm_n_stays)[:-1])
    # log-normal ICU length of stay; sicker stays last longer (median ~2.4 days)
    los_h = np.exp(rng.normal(np.log(58.0) + 0.22 * severity, 0.75))
    los_h = np.clip(los_h, 4.0, 60 * 24.0)

    cursor: dict[int, int] = {}
    for a in range(n_adm):
        p = int(adm_patient[a])
        if p not in cursor:
            start = EPOCH_2110 + (anchor_year[p] - 2110) * YEAR
            # minors must stay minors at their admissions (anchor_age is the age in anchor_year)
            span = 0.4 if minor[p] else 1.6
            cursor[p] = int(start + rng.uniform(0.0, span) * YEAR)
        elif cursor[p] < 0:  # patient died at an earlier admission
            keep[a] = False
            continue
        t = cursor[p]
        t -= t % 60  # MIMIC times are at whole minutes
        has_ed = rng.random() < 0.6
        adm_t["has_ed"][a] = has_ed
        if has_ed:
            adm_t["edregtime"][a] = t - int(rng.uniform(2, 9) * HOUR) // 60 * 60
            adm_t["edouttime"][a] = t + int(rng.uniform(0.1, 1.0) * HOUR) // 60 * 60
        adm_t["admittime"][a] = t
        cur = t + int(rng.gamma(1.5, 8.0) * HOUR)
        stays = stays_of_adm[a]
        for j, s in enumerate(stays):
            intime = cur - cur % 60 + int(rng.integers(0, 60)) * 60
            out = intime + int(los_h[s] * HOUR)
            st_t["intime"][s], st_t["outtime"][s] = intime, out
            cur = out + (int(rng.uniform(12, 120) * HOUR) if j + 1 < len(stays) else 0)
        discharge = cur + int(rng.gamma(1.6, 30.0) * HOUR)
        if adm_dies[a]:
            last = stays[-1] if len(stays) else -1
            if last >= 0 and rng.random() < 0.75:  # dies in the ICU: the stay ends at death
                death = int(st_t["outtime"][last])
                st_t["death_in_stay"][last] = True
            else:  # dies on the ward after the ICU
                death = cur + int(rng.uniform(6, 240) * HOUR)
            death += -death % MINUTE  # round up: the death is never before the stay's end
            discharge = death
            adm_t["deathtime"][a] = death
            adm_t["hospital_expire_flag"][a] = 1
            death_pat.append(p)
            death_time.append(death)
        adm_t["dischtime"][a] = discharge + (-discharge % MINUTE)
        cursor[p] = -1 if adm_dies[a] else int(discharge + rng.exponential(200.0) * DAY)

    # some survivors die after discharge (dod without a deathtime: not an in-hospital death)
    last_disch: dict[int, int] = {}
    for a in np.flatnonzero(keep):
        last_disch[int(adm_patient[a])] = int(adm_t["dischtime"][a])
    died = set(death_pat)
    for p, t in last_disch.items():
        if p not in died and rng.random() < 0.07 + 0.1 * (age[p] > 75):
            death_pat.append(p)
            death_time.append(t + int(rng.uniform(2, 360) * DAY))
    death = {"patient": np.asarray(death_pat, np.int64), "time": np.asarray(death_time, np.int64)}
    return keep, adm_t, st_t, death
