"""Chinese pre-operative clinical reports for the synthetic lung cohort (the ``rep`` modality).

A report has the sections of a pre-operative summary, in this order: 个人史 (personal history), 既往史
(past history), 手术史 (surgical history), 体格检查 (physical examination), 术前诊断 (pre-operative
diagnosis: one line naming the nodule and the suspected lesion), 诊断依据 (diagnostic basis) and 手术指征
(surgical indication). Each heading starts a line as ``标题：`` followed by one paragraph.
Sentences are drawn from many templated variants; optional sentences are added or dropped until the report
is 1,000-1,700 characters long (``len()`` of the text, headings and newlines included).

Where the text carries signal about the invasiveness level (everything else is level-independent filler):

- the CT reading in 诊断依据: nodule size, density (磨玻璃 / 部分实性 / 实性), solid-component size, CT
  signs, CT value; restated from the true lesion with ``rep_noise`` (size error, density misread, signs
  missed or invented);
- SUVmax, when the report mentions the PET-CT (noisy copy of the true lesion uptake);
- clinical cues drawn from the patient's clinical latent ``t_rep``: age, smoking, CEA, symptoms and
  follow-up change (stable vs growing);
- the pre-operative diagnosis and the impression closing the diagnostic basis (four grades from
  pre-invasive to invasive) and the planned resection (wedge / segment / lobe), which summarise a noisy
  mix of the lesion morphology and the clinical latent (the impression weighs the clinical picture
  more, 0.3 t_morph + 0.7 t_rep, with judgement noise 0.08).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

SECTIONS = ("个人史", "既往史", "手术史", "体格检查", "术前诊断", "诊断依据", "手术指征")
REPORT_MIN_CHARS = 1000
REPORT_MAX_CHARS = 1700

LOBE_NAMES = {"RUL": "右肺上叶", "RML": "右肺中叶", "RLL": "右肺下叶", "LUL": "左肺上叶", "LLL": "左肺下叶"}
SEGMENTS = {
    "RUL": ("尖段", "后段", "前段"),
    "RML": ("外侧段", "内侧段"),
    "RLL": ("背段", "内基底段", "前基底段", "外基底段", "后基底段"),
    "LUL": ("尖后段", "前段", "上舌段", "下舌段"),
    "LLL": ("背段", "前内基底段", "外基底段", "后基底段"),
}
DENSITIES = ("ggo", "part_solid", "solid")
SIGNS = ("lobulation", "spiculation", "pleural", "vacuole", "bronchogram", "vascular")
# what render_report(facts=...) records about the text: stated long-axis size (mm), density class,
# solid-component size (mm; part-solid nodules only), signs, SUVmax (when the PET-CT is quoted),
# impression (0-3: pre-invasive ... invasive), planned resection (0 wedge, 1 segment, 2 lobe)
STATED_FACTS = ("size_mm", "density", "solid_mm", "signs", "suvmax", "impression", "plan", "pet_quoted")

Rng = np.random.Generator
# (core sentences, optional sentences[, closing sentences]); optional ones fill the length budget.
Section = tuple[list[str], ...]


@dataclass(frozen=True)
class Clinical:
    """Clinical facts of one patient (drawn from the clinical latent ``t_rep``)."""

    sex: str  # "M" | "F"
    age: int
    smoking: str  # "never" | "former" | "current"
    smoke_years: int
    cigs_per_day: int
    quit_years: int
    cea: float  # ng/mL, normal < 5
    symptom: str  # "none" | "cough" | "hemoptysis" | "chest_pain"
    followup_months: int
    change: str  # "new" | "stable" | "growth" | "solid_increase"
    family_cancer: bool


@dataclass(frozen=True)
class NoduleReading:
    """The true lesion as the report describes it (before the report's own noise)."""

    lobe: str  # key of LOBE_NAMES
    diameter_mm: float
    solid_fraction: float  # consolidation-to-tumour ratio in [0, 1]
    ggo_hu: float
    signs: tuple[str, ...]  # subset of SIGNS
    suvmax: float


def density_of(solid_fraction: float) -> str:
    """Density class of a nodule from its solid fraction."""
    if solid_fraction < 0.1:
        return "ggo"
    return "part_solid" if solid_fraction < 0.9 else "solid"


def _pick(rng: Rng, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def sample_clinical(rng: Rng, sex: str, t_rep: float) -> Clinical:
    """Clinical facts; age, smoking, CEA, symptoms and growth on follow-up increase with ``t_rep``."""
    age = int(np.clip(round(47 + 16 * t_rep + rng.normal(0, 9)), 28, 84))
    p_smoke = (0.30 + 0.35 * t_rep) if sex == "M" else (0.04 + 0.12 * t_rep)
    smoking = "never"
    if rng.random() < np.clip(p_smoke, 0.0, 0.95):
        smoking = "current" if rng.random() < 0.55 else "former"
    smoke_years = (
        int(np.clip(round(rng.normal(22 + 10 * t_rep, 7)), 3, age - 15)) if smoking != "never" else 0
    )
    cigs = int(_pick(rng, ("5", "10", "10", "15", "20", "20", "30", "40"))) if smoking != "never" else 0
    quit_years = int(rng.integers(1, 16)) if smoking == "former" else 0
    cea = float(np.exp(rng.normal(np.log(1.5) + 1.5 * t_rep, 0.35)))
    symptom = "none"
    if rng.random() < np.clip(0.05 + 0.5 * t_rep, 0.0, 0.9):
        symptom = _pick(rng, ("cough", "cough", "hemoptysis", "chest_pain"))
    change = _sample_change(rng, t_rep)
    months = int(rng.integers(0, 2)) if change == "new" else int(rng.choice((3, 4, 6, 8, 12, 18, 24, 36)))
    family = bool(rng.random() < np.clip(0.08 + 0.15 * t_rep, 0.0, 1.0))
    return Clinical(sex, age, smoking, smoke_years, cigs, quit_years, cea, symptom, months, change, family)


def _sample_change(rng: Rng, t_rep: float) -> str:
    if rng.random() < 0.2:
        return "new"
    p_grow = _sigmoid(8.0 * (t_rep - 0.5))
    if rng.random() >= p_grow:
        return "stable"
    return "growth" if rng.random() < 0.6 else "solid_increase"


# ----------------------------------------------------------------------------------------------------------
# Section builders: each returns (core sentences, optional sentences); optional ones fill the length budget.
# ----------------------------------------------------------------------------------------------------------

_PROVINCES = (
    "浙江省",
    "江苏省",
    "安徽省",
    "江西省",
    "福建省",
    "山东省",
    "河南省",
    "湖北省",
    "湖南省",
    "上海市",
    "四川省",
)
_OCCUPATIONS = (  # (occupation sentence, exposure sentence)
    ("退休前为企业职工。", ""),
    ("务农多年。", "长期从事农业劳动，有农药接触史。"),
    ("职业为教师。", ""),
    ("职业为公司职员。", ""),
    ("从事个体经营多年。", ""),
    ("为工厂工人。", "工作环境中有粉尘接触史，未规律佩戴防护口罩。"),
    ("职业为厨师。", "有长期厨房油烟接触史。"),
    ("职业为司机。", ""),
    ("从事医务工作。", ""),
    ("为机关工作人员。", ""),
    ("从事建筑行业多年。", "有长期粉尘接触史。"),
)
_RELATIVES = ("父亲", "母亲", "哥哥", "姐姐", "叔叔", "舅舅")
_CANCERS = ("肺癌", "肺癌", "胃癌", "肝癌", "食管癌", "结直肠癌", "乳腺癌")


def _personal(rng: Rng, c: Clinical) -> Section:
    prov = _pick(rng, _PROVINCES)
    occ, exposure = _OCCUPATIONS[int(rng.integers(len(_OCCUPATIONS)))]
    if c.sex == "F" and rng.random() < 0.3:
        occ, exposure = "职业为家庭主妇。", "长期从事家务劳动，有厨房油烟接触史。"
    core = [
        _pick(
            rng, (f"生于{prov}，久居当地。", f"出生于{prov}，长期在本地生活。", f"原籍{prov}，现居本市多年。")
        ),
        occ + exposure,
        _pick(
            rng,
            (
                "否认疫区、疫水接触史。",
                "否认血吸虫疫水接触史及疫区居住史。",
                "无疫区旅居史，否认疫水接触史。",
            ),
        ),
        _smoking_sentence(rng, c),
        _pick(
            rng,
            (
                "否认饮酒史。",
                "偶有少量饮酒。",
                "平素不饮酒。",
                f"饮酒{rng.integers(5, 30)}年，每日约白酒1两。",
            ),
        ),
        _marriage_sentence(rng, c),
        _family_sentence(rng, c),
    ]
    if not exposure:
        core.insert(
            3,
            _pick(
                rng,
                (
                    "否认放射性物质、毒物及粉尘接触史。",
                    "否认工业毒物、粉尘及放射性物质接触史。",
                    "无特殊化学品及放射线接触史。",
                ),
            ),
        )
    optional = [
        _pick(
            rng,
            (
                "生活起居规律，饮食无特殊嗜好。",
                "平素作息尚规律，饮食清淡。",
                "饮食以米面为主，喜食腌制食品。",
            ),
        ),
        "否认冶游史，否认吸毒史。",
        _pick(rng, ("平素睡眠可，大小便正常。", "近期饮食、睡眠可，二便无殊。")),
        _pick(rng, ("近期体重无明显变化。", "近半年体重无明显下降。")),
        _pick(
            rng,
            (
                "居住环境尚可，通风良好。",
                "居住地为城市楼房，通风条件一般。",
                "居住于农村，冬季有燃煤取暖史。",
            ),
        ),
        _pick(rng, ("有规律体育锻炼习惯，每周散步或慢跑3至4次。", "平素活动量较少，无规律体育锻炼。")),
    ]
    if c.sex == "F":
        optional.append(
            f"月经史：既往月经规律，{rng.integers(47, 55)}岁绝经，绝经后无异常阴道流血。"
            if c.age >= 52
            else "月经史：月经规律，经量中等，无痛经。"
        )
    if c.smoking == "never" and rng.random() < 0.4:
        optional.append("配偶长期吸烟，有较长时间被动吸烟史。")
    return core, optional


def _smoking_sentence(rng: Rng, c: Clinical) -> str:
    y, n = c.smoke_years, c.cigs_per_day
    if c.smoking == "current":
        return _pick(
            rng, (f"吸烟{y}年，平均每日{n}支，目前仍在吸烟。", f"有吸烟史{y}年，约{n}支/日，未戒烟。")
        )
    if c.smoking == "former":
        return _pick(
            rng,
            (
                f"既往吸烟{y}年，每日约{n}支，已戒烟{c.quit_years}年。",
                f"吸烟史{y}年，{n}支/日，戒烟{c.quit_years}年。",
            ),
        )
    return _pick(rng, ("否认吸烟史。", "无吸烟嗜好。", "平素不吸烟。"))


def _marriage_sentence(rng: Rng, c: Clinical) -> str:
    kids = _pick(rng, ("一子", "一女", "一子一女", "两子", "两女", "一子两女"))
    spouse = _pick(rng, ("体健", "身体健康", "患有高血压"))
    return _pick(
        rng,
        (
            f"{rng.integers(21, 30)}岁结婚，育有{kids}，配偶{spouse}，子女体健。",
            f"已婚，育有{kids}，家人体健。",
            f"已婚已育，育有{kids}。",
        ),
    )


def _family_sentence(rng: Rng, c: Clinical) -> str:
    if c.family_cancer:
        who, what = _pick(rng, _RELATIVES), _pick(rng, _CANCERS)
        return _pick(rng, (f"家族史：{who}患{what}。", f"家族中{who}因{what}去世。", f"{who}有{what}病史。"))
    return _pick(
        rng,
        ("否认家族性遗传病及肿瘤病史。", "家族中无类似疾病患者，否认家族遗传病史。", "否认家族肿瘤病史。"),
    )


def _past(rng: Rng, c: Clinical) -> Section:
    core = [
        _pick(rng, ("平素身体健康状况一般。", "平素体健。", "既往体质尚可。", "平素身体状况良好，少有患病。"))
    ]
    diseases = _comorbidities(rng, c)
    core += diseases or [
        _pick(rng, ("否认高血压、糖尿病、冠心病等慢性病史。", "否认高血压、糖尿病等慢性疾病史。"))
    ]
    core += [
        _pick(
            rng,
            (
                "否认肝炎、结核、伤寒等传染病史。",
                "否认乙肝、结核病史及其密切接触史。",
                "乙肝病毒携带者多年，未予特殊治疗，肝功能正常。",
            ),
        ),
        _pick(rng, ("否认输血史。", "否认输血及血制品使用史。")),
        _pick(
            rng,
            (
                "否认药物及食物过敏史。",
                "否认药物过敏史。",
                "自述对青霉素过敏。",
                "对头孢类药物过敏，表现为皮疹。",
            ),
        ),
        _pick(rng, ("预防接种史随当地进行。", "预防接种史不详。")),
    ]
    optional = [
        "否认慢性阻塞性肺疾病、哮喘等呼吸系统疾病史。",
        "否认脑血管疾病史，否认精神疾病史。",
        "否认长期服用激素及免疫抑制剂史。",
        _pick(rng, ("近期无发热、盗汗、乏力等不适。", "近期无发热、咳嗽、咳痰等呼吸道感染症状。")),
        "否认肾脏疾病史，否认甲状腺功能异常病史。",
        _pick(
            rng,
            (
                "曾因肺部感染于当地医院住院抗感染治疗，治疗后好转。",
                "否认反复呼吸道感染史。",
                "既往胸部影像学检查资料不详。",
            ),
        ),
    ]
    return core, optional


def _comorbidities(rng: Rng, c: Clinical) -> list[str]:
    out = []
    older = max(c.age - 40, 0) / 40
    if rng.random() < 0.12 + 0.35 * older:
        drug = _pick(rng, ("氨氯地平片", "硝苯地平控释片", "缬沙坦胶囊", "厄贝沙坦片"))
        top = f"{rng.integers(150, 181)}/{rng.integers(90, 111)}mmHg"
        out.append(f"高血压病史{rng.integers(2, 20)}年，最高血压{top}，规律口服{drug}，血压控制可。")
    if rng.random() < 0.05 + 0.15 * older:
        out.append(
            _pick(
                rng,
                (
                    f"2型糖尿病病史{rng.integers(2, 15)}年，口服二甲双胍，空腹血糖控制在6至7mmol/L左右。",
                    f"糖尿病病史{rng.integers(2, 15)}年，皮下注射胰岛素治疗，血糖控制尚可。",
                ),
            )
        )
    if rng.random() < 0.02 + 0.10 * older:
        out.append(f"冠心病病史{rng.integers(2, 10)}年，长期口服阿司匹林肠溶片，入院前已停用1周。")
    if rng.random() < 0.10:
        out.append(
            _pick(
                rng,
                (
                    "高脂血症病史，口服阿托伐他汀钙片。",
                    "慢性胃炎病史多年，间断口服奥美拉唑。",
                    "甲状腺结节病史，定期复查。",
                ),
            )
        )
    if c.smoking != "never" and rng.random() < 0.25:
        out.append(f"慢性支气管炎病史{rng.integers(3, 15)}年，冬春季节易发作。")
    return out


_SURGERIES_ANY = (
    "因急性阑尾炎于当地医院行阑尾切除术",
    "行腹腔镜下胆囊切除术",
    "行甲状腺部分切除术",
    "因腹股沟疝行疝修补术",
    "行白内障手术",
)
_SURGERIES_F = ("行剖宫产术", "行子宫肌瘤切除术", "行乳腺纤维腺瘤切除术")
_SURGERIES_M = ("因腰椎间盘突出行手术治疗", "行痔切除术")


def _surgical(rng: Rng, c: Clinical) -> Section:
    n = int(rng.choice((0, 0, 0, 1, 1, 2)))
    pool = _SURGERIES_ANY + (_SURGERIES_F if c.sex == "F" else _SURGERIES_M)
    chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=n, replace=False))] if n else []
    core = []
    for op in chosen:
        after = _pick(rng, ("术后恢复良好", "术后恢复可", "术后无明显并发症", "术后规律复查"))
        core.append(f"{rng.integers(2, 30)}年前{op}，{after}。")
    if not core:
        core.append(_pick(rng, ("否认手术史。", "否认既往手术史。", "既往无手术史。")))
    core.append(
        _pick(
            rng,
            (
                "否认重大外伤史。",
                "否认外伤史。",
                f"{rng.integers(3, 30)}年前有前臂骨折史，保守治疗后已愈合。",
            ),
        )
    )
    optional = [
        "既往麻醉过程顺利，未发生麻醉相关不良反应。" if chosen else "既往无麻醉史。",
        "否认器官移植史。",
        "否认胸部放射治疗史。",
        "否认介入及内镜下治疗史。",
    ]
    return core, optional


def _exam(rng: Rng, c: Clinical, side: str) -> Section:
    t = rng.uniform(36.2, 37.0)
    p, r = rng.integers(62, 93), rng.integers(16, 21)
    sbp, dbp = rng.integers(105, 151), rng.integers(62, 93)
    height = rng.integers(160, 181) if c.sex == "M" else rng.integers(150, 169)
    weight = round(height * height / 10000 * rng.uniform(19.0, 28.0))
    vitals = _pick(
        rng,
        (
            f"T {t:.1f}℃，P {p}次/分，R {r}次/分，BP {sbp}/{dbp}mmHg。",
            f"体温{t:.1f}℃，脉搏{p}次/分，呼吸{r}次/分，血压{sbp}/{dbp}mmHg。",
        ),
    )
    lungs = "双肺呼吸音清，未闻及明显干湿性啰音及胸膜摩擦音。"
    if c.symptom != "none" and rng.random() < 0.5:
        lungs = _pick(
            rng, ("双肺呼吸音稍粗，未闻及明显干湿性啰音。", f"{side}肺呼吸音稍低，未闻及明显干湿性啰音。")
        )
    core = [
        vitals,
        _pick(
            rng,
            (
                "神志清楚，精神可，发育正常，营养中等，自主体位，查体合作。",
                "神清，精神可，步入病房，查体合作。",
            ),
        ),
        _pick(
            rng,
            (
                "全身皮肤黏膜无黄染及出血点，浅表淋巴结未触及肿大。",
                "皮肤巩膜无黄染，双侧锁骨上及腋窝淋巴结未触及肿大。",
            ),
        ),
        _pick(
            rng,
            (
                "胸廓对称无畸形，双侧呼吸动度一致，语颤对称，双肺叩诊呈清音。",
                "胸廓无畸形，双侧呼吸运动对称，叩诊清音。",
            ),
        ),
        lungs,
        f"心前区无隆起，心界不大，心率{p}次/分，律齐，各瓣膜听诊区未闻及病理性杂音。",
        _pick(
            rng, ("腹平软，无压痛及反跳痛，肝脾肋下未触及。", "腹软，全腹无压痛，肝脾肋下未及，肠鸣音正常。")
        ),
    ]
    optional = [
        f"身高{height}cm，体重{weight}kg。",
        "头颅无畸形，双侧瞳孔等大等圆，对光反射灵敏。",
        "颈软，气管居中，甲状腺未触及肿大。",
        _pick(rng, ("脊柱四肢无畸形，双下肢无水肿，杵状指（趾）阴性。", "四肢活动自如，双下肢无水肿。")),
        "生理反射存在，病理反射未引出。",
        "专科检查：胸壁无压痛，气管居中，双侧胸廓对称，未触及皮下气肿。",
    ]
    return core, optional


# ----------------------------------------------------------------------------------------------------------
# Diagnostic basis and surgical indication: where the level signal lives.
# ----------------------------------------------------------------------------------------------------------

_DENSITY_WORDS = {
    "ggo": ("磨玻璃密度", "纯磨玻璃", "磨玻璃"),
    "part_solid": ("部分实性", "混杂磨玻璃密度", "部分实性（混合磨玻璃）"),
    "solid": ("实性", "实性软组织密度"),
}
_SIGN_WORDS = {
    "lobulation": "分叶征",
    "spiculation": "毛刺征",
    "pleural": "胸膜牵拉凹陷征",
    "vacuole": "空泡征",
    "bronchogram": "支气管充气征",
    "vascular": "血管集束征",
}
_IMPRESSIONS = (
    (
        "考虑癌前病变（不典型腺瘤样增生）或原位腺癌可能",
        "考虑良性病变或癌前病变可能，早期肺腺癌不能除外",
        "考虑原位腺癌可能",
    ),
    ("考虑早期肺腺癌可能，原位癌或微浸润腺癌待排", "考虑微浸润性腺癌可能", "考虑早期肺癌可能性大"),
    ("考虑肺腺癌可能性大，浸润性腺癌不能除外", "考虑恶性肿瘤可能，浸润性腺癌待排", "考虑肺恶性肿瘤可能性大"),
    ("考虑浸润性肺腺癌可能性大", "考虑周围型肺癌，浸润性腺癌可能大", "考虑肺癌，浸润性病变可能大"),
)


def _duration(months: int) -> str:
    if months <= 1:
        return _DURATION_NEW[months]
    if months < 6:
        return f"{months}月余"
    if months < 12:
        return "半年余"
    return f"{months // 12}年余"


_DURATION_NEW = ("1周", "1月")


def _complaint(rng: Rng, c: Clinical, lobe_name: str) -> str:
    found = _duration(c.followup_months)
    if c.symptom == "cough":
        return f"咳嗽、咳痰{_pick(rng, ('2周', '1月余', '2月'))}，发现{lobe_name}结节{found}"
    if c.symptom == "hemoptysis":
        return f"痰中带血{_pick(rng, ('1周', '半月', '1月'))}，发现肺结节{found}"
    if c.symptom == "chest_pain":
        return f"间断胸闷、胸痛{_pick(rng, ('半月', '1月', '2月余'))}，发现肺结节{found}"
    return _pick(
        rng,
        (
            f"体检发现{lobe_name}结节{found}",
            f"体检发现肺结节{found}",
            f"体检胸部CT发现{lobe_name}占位{found}",
        ),
    )


def _reported_density(rng: Rng, true_density: str, rep_noise: float) -> str:
    i = DENSITIES.index(true_density)
    if rng.random() < 0.5 * rep_noise:
        i = int(np.clip(i + (1 if rng.random() < 0.5 else -1), 0, 2))
    return DENSITIES[i]


def _reported_signs(rng: Rng, signs: Sequence[str], rep_noise: float) -> list[str]:
    out = []
    for sign in SIGNS:
        keep = rng.random() < (1.0 - 0.4 * rep_noise if sign in signs else 0.25 * rep_noise)
        if keep:
            out.append(sign)
    return out


def _ct_item(rng: Rng, nod: NoduleReading, rep_noise: float, facts: dict[str, object]) -> str:
    lobe, seg = LOBE_NAMES[nod.lobe], _pick(rng, SEGMENTS[nod.lobe])
    long_mm = max(3, round(nod.diameter_mm * float(np.exp(rng.normal(0, 0.06 + 0.25 * rep_noise)))))
    short_mm = max(2, round(long_mm * rng.uniform(0.65, 0.95)))
    density = _reported_density(rng, density_of(nod.solid_fraction), rep_noise)
    text = (
        f"胸部CT{_pick(rng, ('示', '提示', '（本院）示', '（外院）示'))}："
        f"{lobe}{seg}见一{_pick(rng, _DENSITY_WORDS[density])}结节，"
        f"大小约{long_mm}mm×{short_mm}mm"
    )
    if density == "part_solid":
        ratio = np.clip(nod.solid_fraction + rng.normal(0, 0.05 + 0.2 * rep_noise), 0.1, 0.9)
        core = max(2, round(long_mm * ratio))
        facts["solid_mm"] = core
        text += f"，实性成分约{core}mm"
    signs = _reported_signs(rng, nod.signs, rep_noise)
    facts.update(size_mm=long_mm, density=density, signs=tuple(signs))
    margin = "边缘欠光整" if "spiculation" in signs else _pick(rng, ("边界清楚", "边缘光整", "边界尚清"))
    text += f"，{margin}"
    if signs:
        words = "、".join(_SIGN_WORDS[s] for s in signs)
        text += _pick(rng, (f"，可见{words}", f"，伴{words}"))
    else:
        text += _pick(rng, ("，未见明显分叶及毛刺", "，周围未见明显异常征象"))
    hu = (
        nod.ggo_hu + rng.normal(0, 30)
        if density == "ggo"
        else rng.normal(25, 15)
        if density == "solid"
        else None
    )
    if hu is not None:
        text += f"，CT值约{round(hu)}HU"
    return text + "。"


def _pet_item(rng: Rng, nod: NoduleReading, rep_noise: float, facts: dict[str, object]) -> str:
    suv = nod.suvmax * float(np.exp(rng.normal(0, 0.05 + 0.2 * rep_noise)))
    facts["suvmax"] = round(suv, 1)
    grade = "未见明显增高" if suv < 1.5 else "轻度增高" if suv < 2.5 else "增高" if suv < 5 else "明显增高"
    lobe = LOBE_NAMES[nod.lobe]
    return _pick(
        rng,
        (
            f"PET-CT示：{lobe}结节FDG代谢{grade}，SUVmax约{suv:.1f}，全身其余部位未见明显异常代谢灶。",
            f"PET-CT提示{lobe}结节糖代谢{grade}（SUVmax {suv:.1f}），纵隔及肺门淋巴结未见明显代谢增高。",
        ),
    )


def _marker_item(rng: Rng, c: Clinical) -> str:
    cyfra, nse = rng.uniform(1.0, 3.3), rng.uniform(8.0, 16.0)
    verdict = "CEA轻度升高，余均在正常范围内" if c.cea >= 5.0 else "均在正常范围内"
    return f"肿瘤标志物：CEA {c.cea:.1f}ng/mL，CYFRA21-1 {cyfra:.1f}ng/mL，NSE {nse:.1f}ng/mL，{verdict}。"


def _followup_item(rng: Rng, c: Clinical) -> str:
    if c.change == "new":
        return _pick(
            rng,
            ("此次为首次发现该结节，既往无胸部影像学资料对比。", "该结节为首次发现，既往未行胸部CT检查。"),
        )
    when = _duration(c.followup_months)
    if c.change == "stable":
        return _pick(
            rng,
            (
                f"患者{when}前首次发现该结节，随访复查大小及密度无明显变化。",
                f"随访{when}，结节大小及形态较前相仿。",
            ),
        )
    if c.change == "growth":
        return _pick(
            rng, (f"患者{when}前首次发现该结节，复查示结节较前增大。", f"随访{when}，结节较前略增大。")
        )
    return _pick(
        rng, (f"患者{when}前首次发现该结节，复查示实性成分较前增多。", f"随访{when}，结节实性成分较前增加。")
    )


def _diagnosis(
    rng: Rng,
    c: Clinical,
    nod: NoduleReading,
    impression: int,
    rep_noise: float,
    pet_done: bool,
    facts: dict[str, object],
) -> Section:
    sex = "男" if c.sex == "M" else "女"
    lobe = LOBE_NAMES[nod.lobe]
    core = [
        f"患者{sex}性，{c.age}岁，因“{_complaint(rng, c, lobe)}”入院。",
        _ct_item(rng, nod, rep_noise, facts),
        _pick(
            rng,
            (
                "纵隔及双侧肺门未见明显肿大淋巴结，双侧胸腔未见积液。",
                "纵隔内未见明显肿大淋巴结，胸膜未见增厚。",
            ),
        ),
        _followup_item(rng, c),
        _marker_item(rng, c),
    ]
    if pet_done:
        core.append(_pet_item(rng, nod, rep_noise, facts))
    optional = [
        f"肺功能：FEV1 {rng.uniform(1.8, 3.4):.2f}L，占预计值{rng.integers(78, 110)}%，"
        + _pick(rng, ("通气功能基本正常。", "小气道功能轻度减退。", "弥散功能正常。")),
        _pick(rng, ("头颅MRI及全身骨扫描未见明显转移征象。", "上腹部CT未见明显异常，头颅MRI未见转移征象。")),
        "支气管镜检查：各级支气管管腔通畅，未见新生物。",
        _pick(rng, ("血常规、肝肾功能、凝血功能未见明显异常。", "血常规及生化检查大致正常。")),
        _pick(rng, ("心电图：窦性心律，大致正常心电图。", "心脏超声：各房室大小正常，左室射血分数正常。")),
    ]
    basis = f"综合患者病史及影像学表现，{_pick(rng, _IMPRESSIONS[impression])}。"
    return core, optional, [basis]


_PREOP = (
    ("癌前病变（不典型腺瘤样增生）或原位腺癌可能", "原位腺癌可能", "良性或癌前病变可能，早期肺癌待排"),
    ("微浸润性腺癌可能", "早期肺腺癌可能，微浸润性腺癌待排", "早期肺癌可能"),
    ("肺腺癌可能，浸润性腺癌待排", "肺恶性肿瘤可能", "肺癌可能性大"),
    ("浸润性肺腺癌可能性大", "周围型肺癌（浸润性腺癌可能大）", "肺癌，浸润性病变可能大"),
)


def _preop(rng: Rng, nod: NoduleReading, impression: int) -> Section:
    lobe = LOBE_NAMES[nod.lobe]
    what = _pick(rng, ("结节", "占位", "肿物")) if impression == 3 else "结节"
    line = _pick(rng, (f"{lobe}{what}：{{}}。", f"{lobe}{what}（{{}}）。", f"1. {lobe}{what}，{{}}。"))
    return [line.format(_pick(rng, _PREOP[impression]))], []


def _indication(rng: Rng, c: Clinical, nod: NoduleReading, plan: int, small_ggo: bool) -> Section:
    lobe = LOBE_NAMES[nod.lobe]
    approach = _pick(rng, ("胸腔镜下", "单孔胸腔镜下", "单操作孔胸腔镜下", "机器人辅助胸腔镜下"))
    procedure = (
        f"{lobe}楔形切除术",
        f"{lobe}{_pick(rng, SEGMENTS[nod.lobe])}切除术",
        f"{lobe}切除术+系统性纵隔淋巴结清扫术",
    )[plan]
    reason = "随访增大" if c.change in ("growth", "solid_increase") else "持续存在"
    core = [
        _pick(
            rng,
            (
                f"患者{lobe}结节{reason}，影像学提示恶性可能，手术指征明确。",
                f"{lobe}结节{reason}，不能排除恶性病变，具备手术指征。",
                f"患者肺结节{reason}，影像学考虑恶性可能，有手术切除指征。",
            ),
        ),
        _pick(
            rng,
            (
                "术前完善血常规、凝血功能、肝肾功能、心电图及心脏超声等检查，未见明显手术禁忌。",
                "术前各项检查未见明显手术禁忌证，心肺功能可耐受手术。",
            ),
        ),
        f"拟于全麻下行{approach}{procedure}。",
        _pick(
            rng,
            (
                "已向患者及家属详细交代病情、手术方式及围手术期风险，患方表示理解并签字同意手术。",
                "术前已充分告知手术风险及可能并发症，患者及家属知情同意。",
            ),
        ),
    ]
    optional = [
        "术中行快速冰冻病理检查，根据结果决定切除范围。",
        "术后根据病理结果决定是否需要辅助治疗。",
        "已完成术前讨论，科室意见一致同意手术。",
        _pick(rng, ("患者及家属手术意愿明确。", "患者手术意愿强烈，要求尽早手术。")),
        _pick(rng, ("术前指导患者进行呼吸功能锻炼及有效咳嗽训练。", "术前予雾化吸入，加强呼吸道管理。")),
    ]
    if small_ggo:
        optional.insert(0, "结节较小且密度较淡，术中定位困难，拟术前行CT引导下Hookwire定位。")
    if c.smoking == "current":
        optional.append("嘱患者术前严格戒烟。")
    return core, optional


# ----------------------------------------------------------------------------------------------------------
# Assembly and length fitting.
# ----------------------------------------------------------------------------------------------------------


def _assemble(sections: Sequence[Section], chosen: Sequence[set[int]]) -> str:
    lines = []
    for title, (core, optional, *tail), picked in zip(SECTIONS, sections, chosen, strict=True):
        sentences = (
            core + [s for i, s in enumerate(optional) if i in picked] + [t for part in tail for t in part]
        )
        if title == "诊断依据":
            body = "".join(f"{k}. {s}" for k, s in enumerate(sentences, start=1))
        else:
            body = "".join(sentences)
        lines.append(f"{title}：{body}")
    return "\n".join(lines) + "\n"


def _fit_length(rng: Rng, sections: Sequence[Section]) -> str:
    """Add optional sentences in random order until the report reaches a random target length."""
    chosen: list[set[int]] = [set() for _ in sections]
    candidates = [(s, i) for s, sec in enumerate(sections) for i in range(len(sec[1]))]
    order = rng.permutation(len(candidates))
    target = int(rng.integers(REPORT_MIN_CHARS + 60, REPORT_MAX_CHARS - 60))
    text = _assemble(sections, chosen)
    for k in order:
        if len(text) >= target:
            break
        s, i = candidates[int(k)]
        chosen[s].add(i)
        trial = _assemble(sections, chosen)
        if len(trial) > REPORT_MAX_CHARS:
            chosen[s].discard(i)
            continue
        text = trial
    if not REPORT_MIN_CHARS <= len(text) <= REPORT_MAX_CHARS:
        raise RuntimeError(f"report length {len(text)} outside [{REPORT_MIN_CHARS}, {REPORT_MAX_CHARS}]")
    return text


def render_report(
    rng: Rng,
    clinical: Clinical,
    nodule: NoduleReading,
    *,
    t_morph: float,
    t_rep: float,
    rep_noise: float,
    pet_done: bool,
    facts: dict[str, object] | None = None,
) -> str:
    """The full report text (UTF-8, ``\\n`` line ends, one line per section). ``facts``, when given, is
    filled with what the text states (see :data:`STATED_FACTS`)."""
    facts = {} if facts is None else facts
    noise = 0.08
    q_imp = 0.15 * t_morph + 0.85 * t_rep + rng.normal(0, noise)
    impression = int(np.searchsorted((0.3, 0.55, 0.8), q_imp))
    q_plan = 0.3 * t_morph + 0.7 * t_rep + rng.normal(0, noise)
    plan = int(np.searchsorted((0.35, 0.7), q_plan))
    side = "右" if nodule.lobe.startswith("R") else "左"
    small_ggo = nodule.diameter_mm < 10 and nodule.solid_fraction < 0.3
    facts.update(impression=impression, plan=plan, pet_quoted=pet_done)
    builders: list[Callable[[], Section]] = [
        lambda: _personal(rng, clinical),
        lambda: _past(rng, clinical),
        lambda: _surgical(rng, clinical),
        lambda: _exam(rng, clinical, side),
        lambda: _preop(rng, nodule, impression),
        lambda: _diagnosis(rng, clinical, nodule, impression, rep_noise, pet_done, facts),
        lambda: _indication(rng, clinical, nodule, plan, small_ggo),
    ]
    return _fit_length(rng, [build() for build in builders])
