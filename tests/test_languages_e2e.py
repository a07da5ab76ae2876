"""Customers in their own language, end to end: a German, a French and a Spanish customer get
the greeting, an FAQ answer, the survey, a handoff notice and "Alex has joined" in their
language, through the HTTP channel (a real bridge receiving the callbacks) and through Telegram
(python-telegram-bot against the fake Bot API); an agent's language override."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Conversation
from carebot.db.models import Customer as CustomerRow
from carebot.domain.clock import ManualClock, system_clock
from carebot.settings import Settings
from tests.browser import eventually as browser_eventually
from tests.fakes.bot_api import BOT_USERNAME, FakeBotAPI
from tests.fakes.fixtures import load_update
from tests.helpers import Customer, agent, button_payloads, create_app
from tests.telegram_support import eventually, telegram_settings
from tests.test_console_browser import SECRET as CONSOLE_SECRET
from tests.test_console_browser import Bridge as ConsoleBridge
from tests.test_console_browser import Service, log_in
from tests.test_http_delivery import Bridge
from tests.web_chat_support import ORIGIN, SOCKET, Widget, make_site

Client = TestClient[Any, Any]
SECRET = {"X-Carebot-Secret": "bridge-secret"}

# What each customer writes, and the beginnings of what they must read.
SAYS: dict[str, dict[str, str]] = {
    "de": {
        "hello": "Hallo!",
        "hello_reply": "Hallo! Wie kann ich Ihnen helfen?",
        "greeting": "Hallo! Ich bin der Support-Assistent.",
        "talk_to_person": "Mit einer Person sprechen",
        "question": "Wo ist meine Bestellung?",
        "answer": "Ihre Bestellung verfolgen Sie unter Konto → Bestellungen",
        "did_it_help": "Hat Ihnen das geholfen?",
        "yes": "Ja", "no": "Nein, mit einer Person sprechen",
        "glad": "Schön, dass ich helfen konnte!",
        "csat": "Wie zufrieden sind Sie mit der Hilfe, die Sie bekommen haben?",
        "comment": "Was könnten wir besser machen?", "skip": "Überspringen",
        "thanks": "Danke für Ihre Rückmeldung!",
        "queued": "Ich verbinde Sie mit einer Person aus unserem Support-Team. Sie sind "
                  "Nummer 1 in der Warteschlange",
        "joined": "Alex ist dem Gespräch beigetreten.",
    },
    "fr": {
        "hello": "Bonjour !",
        "hello_reply": "Bonjour ! Comment puis-je vous aider ?",
        "greeting": "Bonjour ! Je suis l'assistant du service client.",
        "talk_to_person": "Parler à une personne",
        "question": "Où est ma commande ?",
        "answer": "Vous pouvez suivre votre commande dans Compte → Commandes",
        "did_it_help": "Cela vous a-t-il aidé ?",
        "yes": "Oui", "no": "Non, parler à une personne",
        "glad": "Ravi d'avoir pu vous aider !",
        "csat": "Êtes-vous satisfait de l'aide reçue ?",
        "comment": "Que pourrions-nous améliorer ?", "skip": "Passer",
        "thanks": "Merci pour votre avis !",
        "queued": "Je vous mets en relation avec une personne de notre équipe. Vous êtes "
                  "numéro 1 dans la file d'attente",
        "joined": "Alex a rejoint la conversation.",
    },
    "es": {
        "hello": "¡Hola!",
        "hello_reply": "¡Hola! ¿En qué puedo ayudarte?",
        "greeting": "¡Hola! Soy el asistente de atención al cliente.",
        "talk_to_person": "Hablar con una persona",
        "question": "¿Dónde está mi pedido?",
        "answer": "Puedes seguir tu pedido en Cuenta → Pedidos",
        "did_it_help": "¿Te ha sido útil?",
        "yes": "Sí", "no": "No, hablar con una persona",
        "glad": "¡Me alegra haber ayudado!",
        "csat": "¿Qué tan satisfecho estás con la ayuda que recibiste?",
        "comment": "¿Qué podríamos hacer mejor?", "skip": "Omitir",
        "thanks": "¡Gracias por tu opinión!",
        "queued": "Te paso con una persona de nuestro equipo de soporte. Eres el número 1 "
                  "en la cola",
        "joined": "Alex se ha unido a la conversación.",
    },
}
LANGUAGES = sorted(SAYS)


def titles(reply: dict[str, Any]) -> list[str]:
    return [b["title"] for b in reply["buttons"]]


@pytest.fixture
async def bridge(aiohttp_server: Any) -> tuple[Bridge, TestServer]:
    fake = Bridge()
    return fake, await aiohttp_server(fake.app())


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    bridge: tuple[Bridge, TestServer],
) -> Client:
    _, server = bridge
    app = create_app(replace(
        settings, run_timers=False, http_channel_secret="bridge-secret",
        http_channel_callback_url=str(server.make_url("/carebot")), outbox_poll_seconds=0.05,
    ), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def callbacks(fake: Bridge, count: int) -> list[dict[str, Any]]:
    """The first `count` messages the bridge was called back with (the worker's)."""
    async def arrived() -> bool:
        return len(fake.calls) >= count
    await eventually(arrived, what=f"{count} callbacks to the bridge")
    return [body for _, body in fake.calls[:count]]


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_http_customer_hears_the_bot_in_their_language(
    lang: str, client: Client, bridge: tuple[Bridge, TestServer],
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    s, (fake, _) = SAYS[lang], bridge
    nina = Customer(client, f"u-{lang}", "Nina", headers=SECRET)

    # Greeting: small talk, then the bot's own welcome.
    [hello] = (await nina.say(s["hello"]))["replies"]
    assert hello["text"].startswith(s["hello_reply"])
    [welcome] = (await nina.say("/start"))["replies"]
    assert welcome["text"].startswith(s["greeting"])
    assert titles(welcome) == [s["talk_to_person"]]

    # An FAQ answer from the entry's translation, with the buttons in the language.
    data = await nina.say(s["question"])
    [answer] = data["replies"]
    assert answer["text"].startswith(s["answer"])
    assert answer["text"].endswith(s["did_it_help"])
    assert titles(answer) == [s["yes"], s["no"]]

    # Yes: resolved, and the survey asks in the language; its comment question too.
    glad, survey = (await nina.press("yes:order-status"))["replies"]
    assert glad["text"].startswith(s["glad"])
    assert survey["text"] == s["csat"]
    assert titles(survey) == ["1 😞", "2", "3 😐", "4", "5 😀"]
    [comment] = (await nina.press(button_payloads(survey)[4]))["replies"]
    assert comment["text"].startswith(s["comment"]) and titles(comment) == [s["skip"]]
    [thanks] = (await nina.press(button_payloads(comment)[0]))["replies"]
    assert thanks["text"].startswith(s["thanks"])

    # A handoff notice; the agent who takes it is announced, their words are their own.
    handed = await nina.say("/human")
    assert handed["status"] == "queued"
    assert handed["replies"][0]["text"].startswith(s["queued"])
    alex = await agent(client, sessions, "Alex")
    await alex.act(handed["conversation_id"], "claim")
    await alex.act(handed["conversation_id"], "reply", {"text": "Hi Nina!"}, expect=201)
    joined, reply = await callbacks(fake, 2)
    assert (joined["text"], reply["text"]) == (s["joined"], "Hi Nina!")

    async with sessions() as session:
        conv = await session.get(Conversation, handed["conversation_id"])
        assert conv is not None and (conv.language, conv.language_override) == (lang, None)
        customer = await session.get(CustomerRow, conv.customer_id)
        assert customer is not None and customer.language == lang


async def test_an_agent_sets_the_language_and_the_survey_follows_it(
    client: Client, bridge: tuple[Bridge, TestServer], sessions: async_sessionmaker[AsyncSession],
) -> None:
    fake, _ = bridge
    # Writes English (the bridge says the app is in German: detection wins over a hint).
    otto = Customer(client, "u-otto", "Otto", headers=SECRET)
    resp = await client.post("/api/v1/channels/http/messages", headers=SECRET, json={
        "user_id": "u-otto", "message_id": "o-1", "language": "de",
        "text": "I would like to speak to a human being please"})
    data = await resp.json()
    assert data["replies"][0]["text"].startswith("I'm passing you to a person")
    cid = data["conversation_id"]
    alex, bea = await agent(client, sessions, "Alex"), await agent(client, sessions, "Bea")
    await alex.act(cid, "claim")

    # Only who may act on the conversation may change its language; only served languages.
    await bea.call("PUT", f"/api/v1/conversations/{cid}/language", {"language": "es"},
                   expect=403)
    wrong = await alex.call("PUT", f"/api/v1/conversations/{cid}/language",
                            {"language": "xx"}, expect=400)
    assert "en, de, fr, es" in wrong["error"]["message"]
    summary = await alex.call("PUT", f"/api/v1/conversations/{cid}/language",
                              {"language": "es"})
    assert (summary["language"], summary["language_override"]) == ("es", "es")

    # The override wins over what the customer writes; the survey comes in Spanish.
    await otto.say("thank you, that is all I needed to know today")
    await alex.act(cid, "resolve", {"code": "answered"})
    bodies = await callbacks(fake, 2)
    # Claimed while the conversation spoke English; resolved after the override.
    assert bodies[0]["text"] == "Alex has joined the conversation."
    assert bodies[1]["text"] == "¿Qué tan satisfecho estás con la ayuda que recibiste?"
    cleared = await alex.call("PUT", f"/api/v1/conversations/{cid}/language",
                              {"language": None})
    assert cleared["language_override"] is None
    async with sessions() as session:
        lang = await session.scalar(select(CustomerRow.language))
    assert lang == "es"


# --- Telegram -----------------------------------------------------------------------------


@pytest.fixture
async def api() -> Any:
    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def telegram(
    api: FakeBotAPI, aiohttp_client: Any, settings: Settings, clock: ManualClock,
    starter_kb: None,
) -> Client:
    app = create_app(telegram_settings(settings, api), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


def _buttons(sent: dict[str, Any]) -> list[str]:
    return [b["text"] for row in sent["reply_markup"]["inline_keyboard"] for b in row]


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_telegram_customer_hears_the_bot_in_their_language(
    lang: str, telegram: Client, api: FakeBotAPI, sessions: async_sessionmaker[AsyncSession],
) -> None:
    s = SAYS[lang]
    # Telegram tells the bot the app's language: the welcome is in it before a word is typed.
    api.push_update(load_update("start_command", update_id=None, from__language_code=lang))
    [welcome] = await api.wait_for_sent(1)
    assert welcome["text"].startswith(s["greeting"])
    assert _buttons(welcome) == [s["talk_to_person"]]

    api.push_update(load_update("private_text", text=s["question"], message_id=301,
                                update_id=None, from__language_code=lang))
    answer = (await api.wait_for_sent(2))[1]
    assert answer["text"].startswith(s["answer"]) and answer["text"].endswith(s["did_it_help"])
    assert _buttons(answer) == [s["yes"], s["no"]]

    api.push_update(load_update(
        "callback_query", data="yes:order-status", update_id=None,
        message__message_id=answer["message_id"], from__language_code=lang))
    sent = await api.wait_for_sent(4)
    assert sent[2]["text"].startswith(s["glad"])
    assert sent[3]["text"] == s["csat"]

    api.push_update(load_update("private_text", text="/human", message_id=302,
                                update_id=None, from__language_code=lang))
    handoff = (await api.wait_for_sent(5))[4]
    assert handoff["text"].startswith(s["queued"])
    async with sessions() as session:
        conv = await session.scalar(select(Conversation).order_by(Conversation.id.desc()))
    assert conv is not None and (conv.status, conv.language) == ("queued", lang)


# --- the console --------------------------------------------------------------------------


@pytest.fixture
async def console(
    aiohttp_server: Any, settings: Settings, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> Service:
    """carebot on 127.0.0.1 for the browser, its bridge and a customer (as the console's
    browser tests have them)."""
    bridge = ConsoleBridge()
    bridge_server = await aiohttp_server(bridge.app())
    app = create_app(replace(
        settings, http_channel_secret=CONSOLE_SECRET, outbox_poll_seconds=0.05,
        http_channel_callback_url=str(bridge_server.make_url("/carebot")),
    ), system_clock)
    return Service(await aiohttp_server(app), bridge, sessions)


async def test_the_console_sets_the_language_and_the_customer_reads_it(
    browser: Any, console: Service
) -> None:
    """An agent sees which language the bot detected and picks another in the console; the
    survey after resolving comes in that one."""
    service = console
    alex = await service.person("Alex")
    await service.say("lena", "Hallo!")  # German small talk: the conversation speaks German
    cid = (await service.say("lena", "/human"))["conversation_id"]
    await service.api(alex, "POST", f"/api/v1/conversations/{cid}/claim")
    page = await log_in(browser, service, "Alex")
    await page.goto(f"{service.url}/console#/c/{cid}")
    await page.wait_for_selector("#language")
    assert await page.inner_text("#language option >> nth=0") == "detect (de)"
    await page.select_option("#language", "fr")
    await page.wait_for_selector('#flash:has-text("The bot now speaks fr here")')
    await page.select_option("#resolve-code", "answered")
    await page.click("#resolve")

    async def surveyed() -> bool:
        return "Êtes-vous satisfait de l'aide reçue ?" in service.bridge.texts()

    await browser_eventually(surveyed)
    assert "Alex ist dem Gespräch beigetreten." in service.bridge.texts()
    assert page.errors == []


# --- the web chat -------------------------------------------------------------------------


async def test_web_visitor_gets_the_page_language_until_they_write_another(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    site = await make_site(sessions)  # the default greeting and offline text
    ws = await client.ws_connect(f"{SOCKET}?site={site.key}", headers={"Origin": ORIGIN})
    widget = Widget(ws)
    await ws.send_json({"type": "hello", "since": 0, "language": "es-ES"})
    ready = await widget.expect("ready")
    assert ready["site"]["greeting"] == "¡Hola! ¿En qué podemos ayudarte?"
    assert ready["site"]["offline_text"] == (
        "Ahora no estamos disponibles. Deja un mensaje y te responderemos aquí.")
    # So are the widget's own words: its placeholder, button and marks.
    assert {k: ready["labels"][k] for k in ("placeholder", "send", "sent", "typing")} == {
        "placeholder": "Escribe un mensaje…", "send": "Enviar", "sent": "Enviado ✓",
        "typing": "{name} está escribiendo…"}
    # The widget's errors are in the page's language too.
    await widget.say("x" * 2001)
    error = await widget.expect("error")
    assert error["message"] == "Tu mensaje es demasiado largo: como máximo 2000 caracteres."
    # "ok" says nothing about a language: the page's Spanish answers it.
    await widget.say("ok")
    await widget.until(lambda w: w.has("¿Puedo ayudarte en algo más?", "bot"))
    # A question written in French switches the conversation to French.
    await widget.say("Combien coûte la livraison chez moi ?")
    await widget.until(lambda w: w.has("Cela vous a-t-il aidé ?", "bot"))
    assert widget.has("La livraison standard coûte 4,95 €", "bot")
    await ws.close()


async def test_a_group_mention_gets_the_pointer_in_the_senders_language(
    telegram: Client, api: FakeBotAPI
) -> None:
    api.push_update(load_update("group_text", update_id=None, from__language_code="fr-CA"))
    [sent] = await api.wait_for_sent(1)
    assert sent["text"].startswith("Bonjour ! Je ne peux aider qu'en conversation privée")
    assert sent["text"].endswith(f"https://t.me/{BOT_USERNAME}")
