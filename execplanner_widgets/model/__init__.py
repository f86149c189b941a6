"""The ExecutionBroker v1.0 data model, and readers for the dialects that came before it."""

from .components import (
    ComponentMetadata,
    ComputeResource,
    CoreRange,
    DataResource,
    DockerContainer,
    Executable,
    GenericDataResource,
    GenericExecutable,
    IvoaDataResource,
    JupyterNotebook,
    MessageItem,
    OptionItem,
    PythonScript,
    RucioDataResource,
    S3DataResource,
    SimpleDataResource,
    SingularityContainer,
    SizeRange,
    SkaoDataResource,
    StorageResource,
    WireModel,
)
from .dialects import detect_dialect, load_document, parse_request
from .errors import FieldError, InvalidRequest
from .identifiers import check_identifier
from .kinds import canonical_kind, kind_uri, short_kind
from .platform import Calendar, CalendarStep, PlatformDescription, PlatformList
from .request import ExecutionRequest, RequestedSchedule, ScheduleBlock
from .phases import (
    ACTIVE_PHASES,
    FINAL_PHASES,
    RUNNING_PHASES,
    SessionPhase,
    UwsPhase,
    offer_expired,
    uws_phase,
)
from .results import PlatformResult, ResultList
from .session import (
    Connector,
    EnumValueUpdate,
    ExecutionSession,
    OfferSetResponse,
    ResultItem,
    SessionSchedule,
    UpdateModel,
    phase_update,
)
from .status import ErrorBody, FieldProblem, JobStatus
from .types import TimeInterval, format_instant, parse_instant, utcnow
from .units import UnitError, format_duration, format_size, human_duration, parse_duration, parse_size_gib

__all__ = [name for name in dir() if not name.startswith("_")]
