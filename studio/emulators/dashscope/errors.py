"""DashScope and OSS error codes with their exact messages (provider-api.md §5.5, §6)."""

from __future__ import annotations


def image_resolution(low: int, high: int) -> str:
    """§6 InvalidFile.Resolution with a model's own bounds (s2v: 400 and 7000)."""
    return (
        "The image resolution is invalid, please make sure that the largest length "
        f"of image is smaller than {high}, and the smallest length of image is "
        f"larger than {low}."
    )


# code -> (HTTP status, message), verbatim from provider-api.md §6 / §5.5.
KNOWN: dict[str, tuple[int, str]] = {
    "InvalidParameter": (
        400,
        "Required parameter(s) missing or invalid, please check the request parameters.",
    ),
    "InvalidParameter.DataInspection": (
        400,
        "Unable to download the media resource during the data inspection process.",
    ),
    "InvalidURL": (
        400,
        "Required URL is missing or invalid, please check the request URL.",
    ),
    "InvalidFile.Openerror": (
        400,
        "Invalid file, cannot open file as video/audio/image.",
    ),
    "InvalidFile.Format": (
        400,
        "Invalid file format，the request file format is one of the following "
        "types: MP4, AVI, MOV, MP3, WAV, AAC, JPEG, JPG, PNG, BMP, and WEBP.",
    ),
    "InvalidFile.Resolution": (400, image_resolution(400, 7000)),
    "InvalidFile.NoHuman": (
        400,
        "The input image has no human body. Please upload other image with single "
        "person.",
    ),
    "InvalidFile.MultiHuman": (
        400,
        "The input image has multi human bodies. Please upload other image with "
        "single person.",
    ),
    "InvalidFile.Content": (
        400,
        "The input image has multi human bodies. Please upload other image with "
        "single person.",
    ),
    "InvalidFile.BodyProportion": (
        400,
        "The proportion of the detected person in the picture is too large or too "
        "small, please upload other image.",
    ),
    "InvalidFile.FacePose": (
        400,
        "The pose of the detected face is invalid, please upload other image with "
        "whole face and expected orientation.",
    ),
    "InvalidFile.Value": (
        400,
        "The value of the image is invalid, please upload other clearer image.",
    ),
    "InvalidFile.AspectRatio": (
        400,
        "Invalid file ratio. The file aspect ratio (height/width) must be between "
        "3:1 and 1:3.",
    ),
    "InvalidImage.NoHumanFace": (400, "No human face detected."),
    "DataInspectionFailed": (400, "Input data may contain inappropriate content."),
    "IPInfringementSuspect": (
        400,
        "Input data is suspected of being involved in IP infringement.",
    ),
    "Arrearage": (
        400,
        "Access denied, please make sure your account is in good standing.",
    ),
    "InvalidApiKey": (401, "Invalid API-key provided."),
    "AccessDenied": (403, "Access denied."),
    "AccessDenied.Unpurchased": (
        403,
        "Access to model denied. Please make sure you are eligible for using the "
        "model.",
    ),
    "AllocationQuota.FreeTierOnly": (
        403,
        "The free tier of the model has been exhausted. If you want to continue "
        'access the model on a paid basis, please disable the "use free tier '
        'only" mode in the management console.',
    ),
    "ModelNotFound": (404, "Model can not be found."),
    "NotFound": (404, "Not found!"),
    "Throttling": (429, "Requests throttling triggered."),
    "Throttling.RateQuota": (
        429,
        "Requests rate limit exceeded, please try again later.",
    ),
    "Throttling.AllocationQuota": (
        429,
        "Allocated quota exceeded, please increase your quota limit.",
    ),
    "InternalError": (
        500,
        "An internal error has occured, try again later or contact service support.",
    ),
    "InternalError.Algo": (
        500,
        "An internal error has occured during algorithm execution.",
    ),
    "InternalError.Timeout": (
        500,
        "An internal timeout error has occured during execution, try again later or "
        "contact service support.",
    ),
    "SystemError": (500, "An system error has occured, try again later."),
    "ModelServingError": (
        503,
        "Too many requests. Your requests are being throttled due to system "
        "capacity limits. Please try again later.",
    ),
    "ModelUnavailable": (503, "Model is unavailable, try again later."),
    # Not in §6: the emulator's answer to cancelling a task that is not PENDING
    # (an open question, §13.8).
    "UnsupportedOperation": (
        400,
        "Failed to cancel the task, please confirm if the task is in PENDING status.",
    ),
}

# Messages used in several places (§6).
NO_KEY = "No API-key provided."
BAD_BODY = "Required body invalid, please check the request body format."
SYNC_ONLY = "Current user api does not support asynchronous calls."
ASYNC_ONLY = "current user api does not support synchronous calls."
OSS_URL_INVALID = (
    "The provided URL does not appear to be valid. Ensure it is correctly formatted."
)
INVALID_URL = "Invalid URL provided in your request."
# What DashScope answers when a known model is sent to the wrong endpoint
# (seen verbatim in public bug reports; not in provider-api.md).
WRONG_ENDPOINT = "url error, please check url！"
IMAGE_TYPE = (
    "The request URL is invalid, please check the request URL is available and the "
    "request image format is one of the following types: JPEG, JPG, PNG, BMP, and "
    "WEBP."
)
AUDIO_TYPE = "File type is not supported. Allowed types are: .wav, .mp3."
# EMO's parameters (§6, §8.2).
STYLE_LEVEL = "The style_level is invalid."
EXT_BBOX = "Invalid ext_bbox."


def missing(field: str) -> str:
    """The §6 variant of InvalidParameter that names the parameter."""
    return (
        f"Required parameter({field}) missing or invalid, please check the request "
        "parameters."
    )


def video_resolution(low: int, high: int) -> str:
    """InvalidFile.Resolution for a video. §6 words it only for images; this
    follows the same form with §7.1's video bounds."""
    return (
        "The video resolution is invalid, please make sure that the largest length "
        f"of video is smaller than {high}, and the smallest length of video is "
        f"larger than {low}."
    )


def file_size(max_bytes: int) -> str:
    """§6 InvalidFile.Size, "xxx" filled in."""
    return (
        "Invalid file size. The video/audio/image file size must be less than "
        f"{max_bytes / 1e6:g}MB."
    )


def file_duration(low: float, high: float) -> str:
    """§6 InvalidFile.Duration, "xxx s ~ yyy s" filled in."""
    return f"Invalid file duration. The file duration must be {low:g} s ~ {high:g} s."


def method_not_supported(method: str) -> str:
    return f"Request method '{method}' is not supported."


class ApiError(Exception):
    """An error answer: HTTP status, DashScope code and message."""

    def __init__(self, status: int, code: str, message: str | None = None) -> None:
        if message is None:
            message = KNOWN.get(code, (status, code))[1]
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def of(cls, code: str, message: str | None = None) -> ApiError:
        """The error with the status and message §6 gives for `code`."""
        status, default = KNOWN.get(code, (400, code))
        return cls(status, code, message or default)


class OssError(Exception):
    """An answer of the emulated OSS host; OSS writes its errors as XML (§13.13)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def known_status(code: str, default: int) -> int:
    return KNOWN.get(code, (default, ""))[0]


def known_message(code: str, default: str = "") -> str:
    return KNOWN.get(code, (0, default or code))[1]
