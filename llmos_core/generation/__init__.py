"""Chat generation, in roles: what a request is (request.py), its prompt (prompt.py), what comes out
(output.py) and who runs when (service.py). The runners that make tokens are in models/ behind the
Runner contract (models/runner.py)."""
from .output import Reply, StopScanner
from .prompt import (CONTEXT_CAP, MAX_PROMPT_CHARS, PLAIN_NOTE, PLAIN_STOP, ROLES, PromptPlan, build_prompt,
                     check_messages, render_plain, template_pieces)
from .request import ChatResult, SamplingParams, TokenEvent
from .service import RUNNERS, GenerationService

__all__ = ["CONTEXT_CAP", "MAX_PROMPT_CHARS", "PLAIN_NOTE", "PLAIN_STOP", "ROLES", "RUNNERS", "ChatResult",
           "GenerationService", "PromptPlan", "Reply", "SamplingParams", "StopScanner",
           "TokenEvent", "build_prompt", "check_messages", "render_plain", "template_pieces"]
