"""Language detection on short chat texts: py3langid against lingua, by accuracy and cost.

Usage: .venv/bin/python benchmarks/language_detection.py [--repeat 20]

Both detectors are restricted to the languages carebot serves by default (en, de, fr, es), as
carebot.matching.language_detect restricts py3langid. For each, on the hand-written texts
below (what customers type in a support chat: questions, complaints, one-word replies):

  accuracy      share of all texts whose top language is right
  acc >=12ch    the same among texts of at least CAREBOT_LANGUAGE_MIN_CHARS (12) characters,
                the only ones the language rule lets a detection switch a conversation
  believed      share of all texts the rule would believe (>= 12 characters and confidence
                >= CAREBOT_LANGUAGE_MIN_CONFIDENCE, 0.9)
  wrong+sure    share of all texts believed but wrong: the costly mistake (a customer
                switched to a language they do not speak)
  us/msg        median microseconds per text over --repeat passes (one thread)
  load ms       time to load the detector's model

The texts were written for this benchmark; they are not the matcher's query sets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIN_CHARS = 12
MIN_CONFIDENCE = 0.9
LANGUAGES = ("en", "de", "fr", "es")

TEXTS: dict[str, list[str]] = {
    "en": [
        "hi", "ok thanks", "where's my parcel??", "it never arrived",
        "can I get a refund for the blue jacket", "the zip is broken",
        "how long does shipping take to Ireland", "wrong size, need a medium",
        "my card got declined twice", "still waiting on my order from last week",
        "do you ship to Norway", "I want to talk to a real person",
        "cancel my order pls", "the app keeps logging me out", "no", "thx a lot!",
        "is the sale still on", "why was I charged twice", "I never got the confirmation email",
        "can I return it in the store", "what's the status of order 48213",
        "my voucher code isn't working", "the parcel was damaged", "change delivery address",
        "when will the sneakers be back in stock",
    ],
    "de": [
        "hallo", "ok danke", "wo ist mein Paket??", "ist nie angekommen",
        "kann ich das Geld für die blaue Jacke zurückbekommen", "der Reißverschluss ist kaputt",
        "wie lange dauert der Versand nach Österreich", "falsche Größe, brauche M",
        "meine Karte wurde zweimal abgelehnt", "warte immer noch auf meine Bestellung",
        "liefert ihr in die Schweiz", "ich will mit einem Menschen sprechen",
        "bitte Bestellung stornieren", "die App meldet mich ständig ab", "nein", "vielen dank!",
        "läuft der Sale noch", "warum wurde zweimal abgebucht", "keine Bestätigungsmail bekommen",
        "kann ich im Laden zurückgeben", "Status von Bestellung 48213?",
        "mein Gutscheincode geht nicht", "das Paket war beschädigt", "Lieferadresse ändern",
        "wann gibt es die Sneaker wieder",
    ],
    "fr": [
        "bonjour", "ok merci", "où est mon colis ??", "jamais reçu",
        "je peux être remboursé pour la veste bleue", "la fermeture éclair est cassée",
        "combien de temps pour livrer en Belgique", "mauvaise taille, il me faut du M",
        "ma carte a été refusée deux fois", "j'attends toujours ma commande",
        "vous livrez en Suisse", "je veux parler à un humain",
        "annulez ma commande svp", "l'appli me déconnecte tout le temps", "non", "merci beaucoup !",
        "les soldes sont encore en cours", "pourquoi j'ai été débité deux fois",
        "pas reçu le mail de confirmation", "je peux retourner en magasin",
        "où en est la commande 48213", "mon code promo ne marche pas", "le colis était abîmé",
        "changer l'adresse de livraison", "quand les baskets seront de retour",
    ],
    "es": [
        "hola", "vale gracias", "¿dónde está mi paquete?", "nunca llegó",
        "me podéis devolver el dinero de la chaqueta azul", "la cremallera está rota",
        "cuánto tarda el envío a Portugal", "talla equivocada, necesito una M",
        "me han rechazado la tarjeta dos veces", "sigo esperando mi pedido",
        "enviáis a Suiza", "quiero hablar con una persona",
        "cancelad mi pedido porfa", "la app me cierra la sesión todo el rato", "no",
        "¡muchas gracias!", "siguen las rebajas", "por qué me cobrasteis dos veces",
        "no me llegó el correo de confirmación", "puedo devolverlo en la tienda",
        "cómo va el pedido 48213", "mi código de descuento no funciona",
        "el paquete llegó dañado", "cambiar la dirección de entrega",
        "cuándo vuelven las zapatillas",
    ],
}

Detect = Callable[[str], tuple[str, float]]


def py3langid_detector() -> Detect:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(LANGUAGES))

    def detect(text: str) -> tuple[str, float]:
        language, probability = identifier.classify(text)
        return str(language), float(probability)
    return detect


def lingua_detector() -> Detect:
    from lingua import Language, LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_languages(
        Language.ENGLISH, Language.GERMAN, Language.FRENCH, Language.SPANISH).build()

    def detect(text: str) -> tuple[str, float]:
        best = detector.compute_language_confidence_values(text)[0]
        return best.language.iso_code_639_1.name.lower(), float(best.value)
    return detect


def measure(name: str, make: Callable[[], Detect], repeat: int) -> dict[str, float]:
    start = time.perf_counter()
    detect = make()
    detect("warm up")
    load_ms = (time.perf_counter() - start) * 1000
    items = [(lang, t) for lang, texts in TEXTS.items() for t in texts]
    right = long_right = long_n = believed = wrong_sure = 0
    for lang, text in items:
        got, confidence = detect(text)
        right += got == lang
        if len(text) >= MIN_CHARS:
            long_n += 1
            long_right += got == lang
            if confidence >= MIN_CONFIDENCE:
                believed += 1
                wrong_sure += got != lang
    per_pass = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _, text in items:
            detect(text)
        per_pass.append((time.perf_counter() - t0) / len(items) * 1e6)
    n = len(items)
    return {"accuracy": right / n, "acc >=12ch": long_right / long_n, "believed": believed / n,
            "wrong+sure": wrong_sure / n, "us/msg": statistics.median(per_pass),
            "load ms": load_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    n = sum(len(t) for t in TEXTS.values())
    print(f"{n} short chat texts ({', '.join(f'{k} {len(v)}' for k, v in TEXTS.items())}), "
          f"languages restricted to {', '.join(LANGUAGES)}")
    columns = ("accuracy", "acc >=12ch", "believed", "wrong+sure", "us/msg", "load ms")
    print(f"{'detector':<10} " + " ".join(f"{c:>11}" for c in columns))
    for name, make in (("py3langid", py3langid_detector), ("lingua", lingua_detector)):
        r = measure(name, make, args.repeat)
        cells = [f"{100 * r[c]:10.1f}%" for c in columns[:4]]
        cells += [f"{r['us/msg']:11.1f}", f"{r['load ms']:11.0f}"]
        print(f"{name:<10} " + " ".join(cells))


if __name__ == "__main__":
    main()
