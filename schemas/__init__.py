"""Typed records and the topic registry: gapstream's public API."""

from schemas.records import *  # noqa: F401,F403
from schemas.questions import AnswerRecord, ClarificationRecord  # noqa: F401
from schemas.records import SCHEMA_VERSION  # noqa: F401
from schemas.topics import ALL_TOPICS, DEFAULT_PREFIX, TopicSpec  # noqa: F401
