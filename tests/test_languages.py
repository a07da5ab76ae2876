"""Languages: the rule that picks a conversation's language, the catalogs (every text of the
bot translated in every shipped language), small talk per language, and translated knowledge
entries."""

from __future__ import annotations

import gettext
import re
from dataclasses import fields
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from carebot.domain.language import Choice, Detected, LanguagePolicy, choose, language_tag
from carebot.domain.messages import Phrase
from carebot.domain.texts import LOCALE_DIR, load_texts, say
from carebot.matching.knowledge import KnowledgeError, load_knowledge
from carebot.routing import replies, survey_rules
from carebot.routing.policy import SurveyPolicy
from carebot.routing.smalltalk import load_small_talk
from carebot.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("de", "fr", "es")
POLICY = LanguagePolicy("en", ("en", "de", "fr", "es", "pt_BR"), 0.9, 12)
GERMAN = "Wo ist meine Bestellung geblieben?"

# --- the rule -------------------------------------------------------------------------------

SURE_DE = Detected("de", 0.99)
UNSURE_DE = Detected("de", 0.6)
SURE_FR = Detected("fr", 0.99)


@pytest.mark.parametrize(("case", "kwargs", "expected"), [
    ("nothing known: the default", {}, Choice("en", "default", None)),
    ("a channel hint", {"hint": "de-AT"}, Choice("de", "hint", "de")),
    ("remembered beats the hint", {"remembered": "fr", "hint": "de"},
     Choice("fr", "remembered", None)),
    ("a confident detection beats what is remembered",
     {"text": GERMAN, "detected": SURE_DE, "remembered": "fr", "hint": "es"},
     Choice("de", "detected", "de")),
    ("an unsure detection does not",
     {"text": GERMAN, "detected": UNSURE_DE, "remembered": "fr"},
     Choice("fr", "remembered", None)),
    ("a short text never switches, however sure the detector",
     {"text": "ok danke", "detected": SURE_DE, "remembered": "fr"},
     Choice("fr", "remembered", None)),
    ("a phrase of one language switches whatever its length",
     {"text": "hallo", "detected": Detected("de", 1.0, exact=True), "remembered": "fr"},
     Choice("de", "detected", "de")),
    ("a language not served is no detection",
     {"text": "Onde está o meu pedido agora?", "detected": Detected("it", 0.99),
      "hint": "es"}, Choice("es", "hint", "es")),
    ("the agent's override beats everything",
     {"override": "es", "text": GERMAN, "detected": SURE_DE, "remembered": "fr",
      "hint": "de"}, Choice("es", "override", "es")),
    ("a hint not served falls through to the default", {"hint": "ja-JP"},
     Choice("en", "default", None)),
    ("a served regional code is kept", {"hint": "pt-br"}, Choice("pt_BR", "hint", "pt_BR")),
    ("a detection of French in a German conversation",
     {"text": "Où est ma commande s'il vous plaît ?", "detected": SURE_FR,
      "remembered": "de"}, Choice("fr", "detected", "fr")),
])
def test_the_language_rule(case: str, kwargs: dict[str, object], expected: Choice) -> None:
    assert choose(POLICY, **kwargs) == expected, case  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "served"), [
    ("de", "de"), ("DE", "de"), ("de-CH", "de"), ("de_AT", "de"), ("pt_BR", "pt_BR"),
    ("pt-BR", "pt_BR"), ("pt", None), ("it", None), ("", None), (None, None),
])
def test_codes_as_channels_send_them(code: str | None, served: str | None) -> None:
    assert POLICY.normalise(code) == served


@pytest.mark.parametrize(("value", "tag"), [
    ("de", "de"), ("de-AT", "de-AT"), ("zh-Hant-TW", "zh-Hant-TW"), ("", None),
    ("<script>", None), ("d", None), (42, None), (None, None), ("de-" + "x" * 20, None),
])
def test_language_tags_from_channels(value: object, tag: str | None) -> None:
    assert language_tag(value) == tag


def test_settings_list_the_default_language_first_and_refuse_nonsense() -> None:
    s = Settings(default_language="de", languages="en, fr,de")
    assert s.language_list == ("de", "en", "fr")
    with pytest.raises(SettingsError, match="CAREBOT_DEFAULT_LANGUAGE"):
        Settings(default_language="German")
    with pytest.raises(SettingsError, match="CAREBOT_LANGUAGES"):
        Settings(languages="en,de;fr")


# --- the catalogs ---------------------------------------------------------------------------


def _marked_texts() -> set[str]:
    """Every text the code marks for the catalogs, extracted the way `make catalogs` does."""
    found = extract_from_dir(str(ROOT / "carebot"), method_map=[("**.py", "python")],
                             keywords={"N_": None})
    return {msgid for _, _, msgid, _, _ in found if isinstance(msgid, str)}


def _placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"\{(\w+)\}", text))


@pytest.mark.parametrize("language", SHIPPED)
def test_every_bot_text_is_translated_in_every_shipped_catalog(language: str) -> None:
    marked = _marked_texts()
    assert len(marked) > 30
    po = LOCALE_DIR / language / "LC_MESSAGES" / "carebot.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale=language)
    translated = {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}
    assert sorted(marked - set(translated)) == [], f"untranslated in {po}: run make catalogs"
    compiled = gettext.translation("carebot", LOCALE_DIR, languages=[language])
    for msgid in marked:
        # Same placeholders (a translation can't drop the queue position or add one), and the
        # committed .mo says what the .po says (`make catalogs` was run).
        assert _placeholders(translated[msgid]) == _placeholders(msgid), msgid
        assert compiled.gettext(msgid) == translated[msgid], f"{language}: stale .mo"


def test_the_default_survey_texts_are_catalog_texts() -> None:
    defaults = {f.name: f.default for f in fields(Settings)}
    texts = [defaults[f"survey_{k}_text"] for k in ("csat", "ces", "comment", "thanks")]
    assert tuple(texts) == survey_rules.DEFAULT_TEXTS
    policy_defaults = {f.name: f.default for f in fields(SurveyPolicy)}
    marked = _marked_texts()
    assert {policy_defaults["stale_text"], policy_defaults["closed_text"], *texts} <= marked


def test_a_phrase_renders_in_each_language_with_its_values_as_written() -> None:
    texts = load_texts(("en", *SHIPPED))
    message = say(replies.JOINED, agent="{Zoë}")
    assert message.text == "{Zoë} has joined the conversation."
    said = {lang: texts.localize(message, lang).text for lang in ("en", *SHIPPED)}
    assert said == {
        "en": "{Zoë} has joined the conversation.",
        "de": "{Zoë} ist dem Gespräch beigetreten.",
        "fr": "{Zoë} a rejoint la conversation.",
        "es": "{Zoë} se ha unido a la conversación.",
    }
    # A nested phrase is translated too; a language without a catalog speaks the source.
    nested = Phrase(replies.STILL_WAITING_AWAY, (("position", "2"),
                                                 ("when", Phrase(replies.WHEN_BACK))))
    assert "sobald das Team wieder da ist" in nested.render(texts.gettext("de"))
    assert texts.localize(message, "pt_BR").text == message.text


def test_buttons_are_translated_and_faq_titles_are_not() -> None:
    texts = load_texts(SHIPPED)
    [doc] = [d.doc for d in load_knowledge(ROOT / "knowledge") if d.doc.id == "order-status"]
    answer = texts.localize(replies.answer(doc, "fr", "en"), "fr")
    assert answer.text.startswith("Vous pouvez suivre votre commande")
    assert answer.text.endswith("Cela vous a-t-il aidé ?")
    assert [b.title for b in answer.buttons] == ["Oui", "Non, parler à une personne"]
    offer = texts.localize(replies.suggestions([doc], "es"), "es")
    assert [b.title for b in offer.buttons] == [
        "¿Dónde está mi pedido?", "Ninguna, hablar con una persona"]


def test_an_answer_missing_in_the_language_comes_in_the_default_one_with_a_note() -> None:
    texts = load_texts(SHIPPED)
    [doc] = [d.doc for d in load_knowledge(ROOT / "knowledge") if d.doc.id == "order-status"]
    bare = type(doc)(doc.id, doc.question, doc.answer)  # no translations
    german = texts.localize(replies.answer(bare, "de", "en"), "de").text
    assert german.startswith("(Diese Antwort gibt es leider noch nicht auf Deutsch.)")
    assert doc.answer in german and german.endswith("Hat Ihnen das geholfen?")
    english = texts.localize(replies.answer(bare, "en", "en"), "en").text
    assert english == f"{doc.answer}\n\nDid this help?"


# --- small talk and the knowledge base -------------------------------------------------------


def test_small_talk_answers_in_the_language_of_the_phrase_or_the_conversation() -> None:
    talk = load_small_talk(ROOT / "knowledge" / "smalltalk")
    assert talk.languages() >= {"en", *SHIPPED}
    hallo = talk.reply_for("Hallo!", "en")
    assert hallo is not None and hallo.reply.startswith("Hallo! Wie kann ich")
    assert talk.language_of("Hallo!") == "de" and talk.language_of("ok") is None
    ok_fr = talk.reply_for("OK", "fr")
    assert ok_fr is not None and ok_fr.reply.startswith("Puis-je vous aider")
    gracias = talk.reply_for("¡Muchas gracias!", None)
    assert gracias is not None and gracias.reply == "¡De nada! ¿Puedo ayudarte en algo más?"
    # Every kind of small talk exists in every shipped language.
    kinds = {kind for kind, _ in talk.replies}
    assert {(k, lang) for k in kinds for lang in ("en", *SHIPPED)} <= set(talk.replies)


def test_every_entry_is_translated_and_translated_phrasings_are_matched_texts() -> None:
    docs = [d.doc for d in load_knowledge(ROOT / "knowledge")]
    assert len(docs) == 55
    for doc in docs:
        assert {code for code, _ in doc.translations} == set(SHIPPED), doc.id
        german = doc.in_language("de")
        assert german is not None and german.question in doc.texts()
        assert set(german.phrasings) <= set(doc.texts())


def test_kb_import_names_each_problem_of_a_translation(tmp_path: Path) -> None:
    (tmp_path / "kb.yaml").write_text("""
- id: parcel
  question: Where is my parcel?
  answer: Under Account, Orders.
  translations:
    de:
      question: Wo ist mein Paket?
      answer: Unter Konto, Bestellungen.
      phrasings: [Paket]
    French:
      question: Où est mon colis ?
      answer: Dans Compte.
    es:
      question: ¿Dónde está mi paquete?
      answser: typo
    fr: just a string
""", encoding="utf-8")
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(tmp_path)
    message = str(err.value)
    assert "'translations.French': the key must be a language code like de or pt_BR" in message
    assert "'translations.es': unknown keys: answser" in message
    assert "'translations.es': 'answer' is required and must be non-empty text" in message
    assert "'translations.fr' must be a mapping with question, answer and phrasings" in message
    assert "translations.de" not in message


# --- asking for a person and answering "Did this help?" in each language ---------------------


@pytest.mark.parametrize(("text", "person"), [
    ("Ich möchte mit einem Menschen sprechen", True),
    ("Kann ich bitte mit einem Mitarbeiter reden?", True),
    ("Je veux parler à un conseiller", True),
    ("Puis-je parler à une personne ?", True),
    ("Quiero hablar con una persona", True),
    ("pásame con un agente por favor", True),
    ("Wo ist meine Bestellung?", False),
    ("personne ne répond à mes e-mails", False),  # "personne": nobody
    ("hablar de mi pedido", False),
    ("Comment contacter le service client ?", False),  # an FAQ, as in English
])
def test_a_request_for_a_person_in_each_language(text: str, person: bool) -> None:
    from carebot.routing.intents import wants_human

    assert wants_human(text) is person


def test_no_translated_question_of_the_knowledge_base_reads_as_a_request_for_a_person() -> None:
    from carebot.routing.intents import wants_human

    texts = [t for d in load_knowledge(ROOT / "knowledge") for t in d.doc.texts()]
    assert [t for t in texts if wants_human(t)] == []


@pytest.mark.parametrize(("text", "helped"), [
    ("Ja", True), ("oui merci", True), ("Sí, gracias", True), ("Nein", False),
    ("pas vraiment", False), ("no realmente", False), ("vielleicht", None),
])
def test_typed_feedback_in_each_language(text: str, helped: bool | None) -> None:
    from carebot.routing.intents import typed_feedback

    assert typed_feedback(text) is helped


@pytest.mark.parametrize(("languages", "loads"), [
    (("en", "de", "pt_BR"), [("de", "en", "pt")]),
    (("en", "en_GB"), []),  # one base language: nothing to detect, no model
])
def test_the_detector_loads_its_model_at_startup_only_when_it_will_detect(
    monkeypatch: pytest.MonkeyPatch, languages: tuple[str, ...], loads: list[tuple[str, ...]]
) -> None:
    # The service loads it before listening, so the first customers do not wait ~0.7 s.
    from carebot.matching import language_detect

    loaded: list[tuple[str, ...]] = []
    monkeypatch.setattr(language_detect, "_identifier", lambda langs: loaded.append(langs))
    language_detect.LanguageDetector(languages).load()
    assert loaded == loads
