"""The screen's words in English and 简体中文. ``t(key, lang)``; unknown keys show themselves.

AQI level names come from the standard in force (``models.indicators.aqi``): China's six levels
have official Chinese names; the US levels are translated here.
"""

from __future__ import annotations

LANGS = ("en", "zh")

STRINGS: dict[str, tuple[str, str]] = {
    "title": ("citybrain · city operations", "城市大脑 · 城市运行"),
    "live": ("Live", "实时"),
    "history": ("History", "历史"),
    "play": ("Play", "播放"),
    "pause": ("Pause", "暂停"),
    "view_at": ("Viewing", "查看时刻"),
    "newest": ("Newest data", "最新数据"),
    "arrived": ("arrived", "到达于"),
    "ago": ("ago", "前"),
    "stale": ("STALE DATA: nothing new for", "数据过期：已无新数据"),
    "no_data": ("no data yet", "暂无数据"),
    "demo_banner": (
        "Demo mode: no login; anyone with this page may acknowledge and resolve alerts",
        "演示模式：无需登录，任何人都可以确认和解决告警",
    ),
    "viewer_banner": ("Read-only: signed in as a viewer", "只读：以查看者身份登录"),
    "signed_in": ("Signed in as", "当前用户"),
    "logout": ("Log out", "退出"),
    "kpi_congestion": ("Congestion index", "拥堵指数"),
    "kpi_aqi": ("Air quality (AQI)", "空气质量指数"),
    "kpi_water": ("Water network", "供水管网"),
    "kpi_grid": ("Grid load", "电网负荷"),
    "kpi_alerts": ("Active alerts", "活动告警"),
    "kpi_avail": ("Sensor availability", "传感器可用率"),
    "primary": ("primary", "首要污染物"),
    "normal": ("normal", "正常"),
    "alert": ("ALERT", "告警"),
    "inflow": ("inflow", "进水量"),
    "pressure": ("pressure", "压力"),
    "voltage": ("min voltage", "最低电压"),
    "reporting": ("reporting", "在线"),
    "faulty": ("faulty", "故障"),
    "sev_1": ("minor", "一般"),
    "sev_2": ("major", "较重"),
    "sev_3": ("critical", "严重"),
    "alert_feed": ("Alerts (newest first)", "告警（最新在前）"),
    "no_alerts": ("No alerts", "无告警"),
    "ack": ("Acknowledge", "确认"),
    "resolve": ("Resolve", "解决"),
    "state_open": ("open", "未处理"),
    "state_acknowledged": ("acknowledged", "已确认"),
    "state_resolved": ("resolved", "已解决"),
    "type_traffic": ("traffic", "交通"),
    "type_air_quality": ("air quality", "空气质量"),
    "type_noise": ("noise", "噪声"),
    "type_water": ("water", "供水"),
    "type_power": ("power", "电力"),
    "by": ("by", "处理人"),
    "map": ("City map", "城市地图"),
    "risk": ("Risk", "风险"),
    "risk_none": ("low", "低"),
    "risk_blue": ("blue", "蓝色"),
    "risk_yellow": ("yellow", "黄色"),
    "risk_orange": ("orange", "橙色"),
    "risk_red": ("red", "红色"),
    "status_ok": ("ok", "正常"),
    "status_anomalous": ("anomalous", "异常"),
    "status_faulty": ("faulty", "故障"),
    "status_silent": ("no data", "无数据"),
    "incident": ("incident", "事件"),
    "los": ("level of service", "服务水平"),
    "back": ("← Overview", "← 总览"),
    "district": ("District", "区域"),
    "sensor": ("Sensor", "传感器"),
    "sensors": ("Sensors", "传感器"),
    "alerts": ("Alerts", "告警"),
    "risk_contrib": ("Risk and contributions", "风险及构成"),
    "indicators": ("Indicators", "指标"),
    "raw_series": ("Raw readings, baseline band and anomaly score",
                   "原始读数、基线带与异常分数"),
    "baseline": ("baseline (rolling median ± 3·MAD)", "基线（滚动中位数 ± 3·MAD）"),
    "score": ("anomaly score", "异常分数"),
    "fault_flags": ("fault flags", "故障标记"),
    "threshold": ("threshold", "阈值"),
    "not_found": ("Not found", "未找到"),
    "kind": ("kind", "类型"),
    "status": ("status", "状态"),
    "value": ("value", "数值"),
    "no_permission": ("Viewers cannot change alerts", "查看者不能修改告警"),
    "store_error": ("store error", "数据库错误"),
    "traffic": ("traffic", "交通"),
    "environment": ("environment", "环境"),
    "utility": ("utilities", "公用设施"),
    "login": ("Sign in", "登录"),
    "user": ("User", "用户名"),
    "password": ("Password", "密码"),
    "bad_login": ("Wrong user or password", "用户名或密码错误"),
    "city_trend": ("last hour", "近一小时"),
    "lang_switch": ("中文", "English"),
}

US_LEVELS_ZH = ("良好", "中等", "对敏感人群不健康", "不健康", "非常不健康", "危险")


def t(key: str, lang: str = "en") -> str:
    pair = STRINGS.get(key)
    if pair is None:
        return key
    return pair[1] if lang == "zh" else pair[0]


def aqi_level_name(level: int, standard: str, lang: str) -> str:
    """Name of AQI level 1..6 under ``standard`` ("china" or "us"); "" for 0 (no value)."""
    from models.indicators.aqi import CHINA_LEVELS, US_LEVELS

    if not 1 <= level <= 6:
        return ""
    if standard == "china":
        en, zh = CHINA_LEVELS[level - 1]
        return zh if lang == "zh" else en
    return US_LEVELS_ZH[level - 1] if lang == "zh" else US_LEVELS[level - 1]


POLLUTANT_NAMES = {
    "pm25": "PM2.5", "pm10": "PM10", "no2": "NO₂", "o3": "O₃", "so2": "SO₂", "co": "CO",
}
#: official AQI level colours (both standards use the same six)
AQI_COLOURS = ("#9ca3af", "#00e400", "#ffff00", "#ff7e00", "#ff0000", "#8f3f97", "#7e0023")
