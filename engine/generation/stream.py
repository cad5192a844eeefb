"""Streaming: the new text of one prompt, piece by piece as it is generated."""

from __future__ import annotations

from .api import make_search, single_sequence
from .options import GenerationResult
from .token_search import TokenSearch


class GenerationStream:
    """The new text of one prompt, piece by piece as it is generated: iterate over it for str
    pieces; afterwards `result` holds the GenerationResult. Joined, the pieces are `result.text`:
    no piece splits a UTF-8 character, and text that could be the start of a stop string is held
    back until it is known not to be one."""

    def __init__(self, search: TokenSearch):
        self.search = search
        self.sequence = search.sequences[0]
        self.result: GenerationResult | None = None

    def __iter__(self):
        for _ in self.search.steps():
            piece = self.sequence.text.take()
            if piece:
                yield piece
        rest = self.rest()
        if rest:
            yield rest
        self.result = self.sequence.result()

    def rest(self) -> str:
        """After an interruption: the text generated but not yet handed out (held-back text included)."""
        self.sequence.text.close()
        return self.sequence.text.take()


def stream(model, prompt, **options) -> GenerationStream:
    """Like `generate`, for one prompt and one sample without beams, as an iterator of text pieces."""
    search, single = make_search(model, prompt, options)
    single_sequence(search, single, "stream()")
    return GenerationStream(search)
