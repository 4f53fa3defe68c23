"""Translations of the dashboard: Vietnamese first (ops staff), English on request.

Keys are English identifiers; a missing translation falls back to English, then to the key,
so a page never breaks for a forgotten string (a unit test checks both tables have every key).
"""

from __future__ import annotations

from typing import Any, Literal

from gateway.ops.formatting import format_number

__all__ = ["LANGUAGES", "MESSAGES", "Language", "format_reason", "translate"]

Language = Literal["vi", "en"]
LANGUAGES: tuple[Language, ...] = ("vi", "en")

MESSAGES: dict[str, dict[Language, str]] = {
    "app_title": {"vi": "Cổng tích hợp DVC — Vận hành", "en": "DVC gateway — Operations"},
    "nav_overview": {"vi": "Tổng quan", "en": "Overview"},
    "nav_dead_letters": {"vi": "Việc lỗi", "en": "Dead letters"},
    "nav_audit": {"vi": "Nhật ký trao đổi", "en": "Exchange log"},
    "nav_dossier": {"vi": "Hồ sơ", "en": "Dossier"},
    "sign_in": {"vi": "Đăng nhập", "en": "Sign in"},
    "sign_out": {"vi": "Đăng xuất", "en": "Sign out"},
    "api_key": {"vi": "Khóa truy cập (API key)", "en": "API key"},
    "sign_in_hint": {
        "vi": "Dùng khóa có quyền ops:read (thêm ops:write để chạy lại hoặc hủy việc lỗi).",
        "en": "Use a key with ops:read (and ops:write to replay or discard dead letters).",
    },
    "bad_key": {"vi": "Khóa không hợp lệ.", "en": "Invalid key."},
    "no_ops_scope": {
        "vi": "Khóa này không có quyền ops:read.",
        "en": "This key lacks the ops:read scope.",
    },
    "signed_in_as": {"vi": "Đăng nhập với", "en": "Signed in as"},
    "systems": {"vi": "Hệ thống quốc gia", "en": "National systems"},
    "state_up": {"vi": "Hoạt động", "en": "Up"},
    "state_degraded": {"vi": "Suy giảm", "en": "Degraded"},
    "state_down": {"vi": "Ngừng", "en": "Down"},
    "state_unknown": {"vi": "Chưa rõ", "en": "Unknown"},
    "reason": {"vi": "Lý do", "en": "Reason"},
    # reasons of gateway.health.diagnose, formatted with its arguments as format_reason shows
    # them (numbers with Vietnamese separators, a rate as a percentage)
    "reason_circuit_open": {
        "vi": "Cầu dao mở: tạm ngừng gọi sau nhiều lỗi liên tiếp",
        "en": "Circuit open: calls are paused after repeated failures",
    },
    "reason_probe_failed": {"vi": "Kiểm tra thất bại: {detail}", "en": "Probe failed: {detail}"},
    "reason_errors_down": {
        "vi": "{rate} lượt gọi bị lỗi trong 5 phút qua",
        "en": "{rate} of calls failed in the last 5 minutes",
    },
    "reason_errors_degraded": {
        "vi": "{rate} lượt gọi bị lỗi trong 5 phút qua",
        "en": "{rate} of calls failed in the last 5 minutes",
    },
    "reason_certificate_expired": {
        "vi": "Chứng thư số đã hết hạn",
        "en": "Certificate expired",
    },
    "reason_no_probe": {"vi": "Chưa có kết quả kiểm tra", "en": "No probe result yet"},
    "reason_circuit_half_open": {
        "vi": "Cầu dao nửa mở: đang thử kết nối lại",
        "en": "Circuit half-open: probing recovery",
    },
    "reason_slow": {"vi": "Chậm: p95 {ms} ms", "en": "Slow: p95 {ms} ms"},
    "reason_slow_probe": {"vi": "Kiểm tra chậm: {ms} ms", "en": "Slow probe: {ms} ms"},
    "reason_certificate_expiring": {
        "vi": "Chứng thư số hết hạn sau {days} ngày",
        "en": "Certificate expires in {days} days",
    },
    "reason_probe_stale": {"vi": "Kết quả kiểm tra đã cũ", "en": "Probe result is stale"},
    "latency": {"vi": "Độ trễ p50 / p95 (5 phút)", "en": "Latency p50 / p95 (5 min)"},
    "latency_1h": {"vi": "Độ trễ p50 / p95 (1 giờ)", "en": "Latency p50 / p95 (1 h)"},
    "error_rate": {"vi": "Tỉ lệ lỗi (5 phút)", "en": "Error rate (5 min)"},
    "error_rate_1h": {"vi": "Tỉ lệ lỗi (1 giờ)", "en": "Error rate (1 h)"},
    "circuit": {"vi": "Cầu dao", "en": "Circuit"},
    "circuit_closed": {"vi": "Đóng (bình thường)", "en": "Closed (normal)"},
    "circuit_open": {"vi": "Mở (tạm ngừng gọi)", "en": "Open (calls paused)"},
    "circuit_half_open": {"vi": "Nửa mở (thử lại)", "en": "Half-open (probing)"},
    "last_success": {"vi": "Thành công gần nhất", "en": "Last success"},
    "last_failure": {"vi": "Lỗi gần nhất", "en": "Last failure"},
    "cert_days": {"vi": "Chứng thư số còn (ngày)", "en": "Certificate days left"},
    "last_probe": {"vi": "Kiểm tra gần nhất", "en": "Last probe"},
    "queues": {"vi": "Hàng đợi", "en": "Queues"},
    "job_kind": {"vi": "Loại việc", "en": "Job kind"},
    "queued": {"vi": "Đang chờ", "en": "Queued"},
    "oldest_age": {"vi": "Việc cũ nhất", "en": "Oldest job"},
    "in_flight": {"vi": "Đang chạy", "en": "In flight"},
    "dead": {"vi": "Lỗi", "en": "Dead"},
    "webhooks": {"vi": "Điểm nhận webhook", "en": "Webhook endpoints"},
    "endpoint": {"vi": "Điểm nhận", "en": "Endpoint"},
    "wh_delivering": {"vi": "Đang gửi tốt", "en": "Delivering"},
    "wh_failing": {"vi": "Đang lỗi", "en": "Failing"},
    "wh_disabled": {"vi": "Đã tắt", "en": "Disabled"},
    "none": {"vi": "Không có", "en": "None"},
    "auto_refresh": {"vi": "Tự làm mới mỗi 5 giây", "en": "Refreshes every 5 seconds"},
    "filter": {"vi": "Lọc", "en": "Filter"},
    "system": {"vi": "Hệ thống", "en": "System"},
    "all": {"vi": "Tất cả", "en": "All"},
    "attempts": {"vi": "Các lần thử", "en": "Attempts"},
    "held_back": {"vi": "Việc bị giữ lại phía sau", "en": "Jobs held back behind it"},
    "replay": {"vi": "Chạy lại", "en": "Replay"},
    "discard": {"vi": "Hủy", "en": "Discard"},
    "confirm_replay": {
        "vi": "Chạy lại việc này? Hãy chắc chắn nguyên nhân đã được khắc phục.",
        "en": "Replay this job? Make sure the cause has been fixed.",
    },
    "confirm_discard": {
        "vi": "Hủy việc này? Việc bị hủy sẽ không được gửi đi nữa.",
        "en": "Discard this job? It will never be delivered.",
    },
    "replayed": {"vi": "Đã đưa việc vào hàng đợi để chạy lại.", "en": "The job was queued again."},
    "discarded": {"vi": "Đã hủy việc.", "en": "The job was discarded."},
    "not_dead": {
        "vi": "Việc này không còn ở trạng thái lỗi.",
        "en": "This job is no longer a dead letter.",
    },
    "no_dead_letters": {"vi": "Không có việc lỗi.", "en": "No dead letters."},
    "no_dead_letters_window": {
        "vi": "Không có việc lỗi nào khớp trong phần đã xem; bấm «Cũ hơn» để tìm tiếp.",
        "en": "No matching dead letters in the part searched; “Older” searches on.",
    },
    "created": {"vi": "Tạo lúc", "en": "Created"},
    "time": {"vi": "Thời điểm", "en": "Time"},
    "operation": {"vi": "Thao tác", "en": "Operation"},
    "outcome": {"vi": "Kết quả", "en": "Outcome"},
    "status": {"vi": "Mã HTTP", "en": "HTTP status"},
    "actor": {"vi": "Bên gọi", "en": "Caller"},
    "request_id": {"vi": "Mã yêu cầu", "en": "Request id"},
    "dossier_code": {"vi": "Mã hồ sơ", "en": "Dossier code"},
    "citizen_id": {"vi": "Số định danh công dân", "en": "Citizen ID number"},
    "citizen_id_hint": {
        "vi": "Số định danh được chuyển thành mã băm có khóa; không lưu, không hiển thị.",
        "en": "The number is turned into a keyed digest; it is never stored or shown.",
    },
    "citizen_filter_active": {
        "vi": "Đang lọc theo một số định danh, qua mã băm",
        "en": "Filtered by a citizen ID, through its digest",
    },
    "clear_filter": {"vi": "Bỏ lọc", "en": "Clear"},
    "citizen_id_in_url": {
        "vi": "Số định danh không được đặt trên địa chỉ trang và đã bị bỏ qua; "
        "hãy gõ vào ô Số định danh công dân.",
        "en": "A citizen ID is never taken from the page's address and was ignored; "
        "type it in the Citizen ID number field.",
    },
    "bad_time": {
        "vi": "Thời điểm phải có dạng dd/mm/yyyy hh:mm (giờ Việt Nam); "
        "bộ lọc thời gian sai bị bỏ qua.",
        "en": "Times are dd/mm/yyyy hh:mm (Vietnam time); the malformed time filter was ignored.",
    },
    "from": {"vi": "Từ", "en": "From"},
    "to": {"vi": "Đến", "en": "To"},
    "chain_ok": {"vi": "Chuỗi băm toàn vẹn", "en": "Hash chain intact"},
    "chain_broken": {"vi": "Chuỗi băm bị sửa tại bản ghi", "en": "Hash chain broken at record"},
    "records_checked": {"vi": "bản ghi đã kiểm tra", "en": "records checked"},
    "no_records": {"vi": "Không có bản ghi.", "en": "No records."},
    "older": {"vi": "Cũ hơn", "en": "Older"},
    "show": {"vi": "Xem", "en": "Show"},
    "timeline": {"vi": "Dòng thời gian", "en": "Timeline"},
    "dossier_hint": {
        "vi": "Nhập mã hồ sơ, ví dụ 000.00.19.H47-260105-0001",
        "en": "Enter a dossier code, e.g. 000.00.19.H47-260105-0001",
    },
    "jobs_of_dossier": {"vi": "Việc đồng bộ của hồ sơ", "en": "Sync jobs of the dossier"},
    "state": {"vi": "Trạng thái", "en": "State"},
    "error": {"vi": "Lỗi", "en": "Error"},
    "language": {"vi": "English", "en": "Tiếng Việt"},
    "csrf_failed": {
        "vi": "Phiên làm việc không hợp lệ, hãy tải lại trang.",
        "en": "Invalid form session; reload the page.",
    },
    "need_ops_write": {
        "vi": "Cần quyền ops:write để thực hiện thao tác này.",
        "en": "This needs the ops:write scope.",
    },
    "job_state_queued": {"vi": "Đang chờ", "en": "Queued"},
    "job_state_leased": {"vi": "Đang chạy", "en": "Running"},
    "job_state_succeeded": {"vi": "Thành công", "en": "Succeeded"},
    "job_state_dead": {"vi": "Lỗi", "en": "Dead"},
    "job_state_discarded": {"vi": "Đã hủy", "en": "Discarded"},
    # timeline entries (gateway.timeline, label_key / label_args); English as the API says it
    "tl_replayed": {"vi": "cán bộ vận hành đã chạy lại", "en": "replayed by an operator"},
    "tl_discarded": {"vi": "cán bộ vận hành đã hủy", "en": "discarded by an operator"},
    "tl_job_queued": {"vi": "{kind}: đã vào hàng đợi", "en": "{kind} queued"},
    "tl_job_attempt_failed": {"vi": "{kind}: lần thử bị lỗi", "en": "{kind} attempt failed"},
    "tl_job_now_queued": {"vi": "{kind}: đang chờ chạy", "en": "{kind} queued"},
    "tl_job_now_leased": {"vi": "{kind}: đang chạy", "en": "{kind} leased"},
    "tl_job_now_dead": {"vi": "{kind}: lỗi, đã thôi thử", "en": "{kind} dead"},
}


def translate(key: str, lang: Language) -> str:
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    return entry.get(lang) or entry.get("en") or key


def _reason_arg(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if name == "rate":  # a fraction of calls
        return f"{format_number(value * 100)} %"
    return format_number(value)


def format_reason(code: str | None, args: dict[str, Any], lang: Language) -> str | None:
    """A health reason (gateway.health.REASON_TEXTS) in ``lang``, its numbers written the
    Vietnamese way (``4.200 ms``, ``23 %``) like every other figure of the dashboard; None
    when the code has no translation or the arguments do not fit it."""
    key = f"reason_{code}"
    if code is None or key not in MESSAGES:
        return None
    try:
        return translate(key, lang).format(**{k: _reason_arg(k, v) for k, v in args.items()})
    except (KeyError, IndexError, ValueError):
        return None
