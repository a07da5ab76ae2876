"""The language of a customer's text: py3langid, restricted to the languages carebot serves.

Chosen by `benchmarks/language_detection.py` (short chat texts in en/de/fr/es): py3langid and
lingua are about as accurate on them, and py3langid costs a fraction per message and ships its
model inside the package (no download). Restricting it to the served languages turns "which of
~100 languages" into "which of four", which is both more accurate and what the rule needs.
Whether to believe a guess is the language rule's business (carebot.domain.language): this
module only reports the guess and its normalised probability.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from carebot.domain.language import Detected

# Longer texts say nothing more about their language and cost time in proportion.
MAX_CHARS = 500


@functools.lru_cache(maxsize=4)
def _identifier(languages: tuple[str, ...]) -> object:
    """The model restricted to `languages`, loaded once per process: it takes ~75 MB, and
    every app built in one process (the test suite builds hundreds) would otherwise hold its
    own copy. Classifying only reads it, so threads may share it."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(languages))
    return identifier


class LanguageDetector:
    """Guesses the language of a text among `languages`; the model loads on first use."""

    def __init__(self, languages: Sequence[str]) -> None:
        # py3langid knows base languages ("pt"), carebot may serve regional ones ("pt_BR").
        self.languages = sorted({lang.split("_")[0] for lang in languages})

    def load(self) -> None:
        """Load the model now, if it will be needed: a service calls this at startup (off
        the event loop), since loading takes ~0.7 s and the first customers' messages would
        otherwise wait for it (the first 0.5 s of benchmarks/web_chat.py's chat did)."""
        if len(self.languages) >= 2:
            self._model()

    def _model(self) -> object:
        return _identifier(tuple(self.languages))

    def __call__(self, text: str) -> Detected | None:
        """The likeliest served language of `text` (None: nothing to detect or one language)."""
        text = text.strip()[:MAX_CHARS]
        if not text or len(self.languages) < 2:
            return None
        language, probability = self._model().classify(text)  # type: ignore[attr-defined]
        return Detected(str(language), float(probability))
