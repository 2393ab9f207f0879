"""Built-in strings of the built-in templates, per locale (en, fr, nl, de).

Templates call ``t("key")``; an unknown locale falls back to English, an
unknown key is a bug and raises, so a typo in a template fails in tests.
"""

from __future__ import annotations

from collections.abc import Callable

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "greeting": "Hello {name},",
        "greeting_anonymous": "Hello,",
        "ack_subject": "We received your message",
        "ack_body": "Thank you for your message. It has reached our team and we will get back to you soon.",
        "ack_reference": "Your reference is {reference}; keep it in the subject if you write to us again.",
        "auto_reply_subject": "Automatic reply",
        "reply_hint": "You can answer this email directly; please keep the reference in the subject.",
        "attachments": "Attachments",
        "previous": "On {date}, {author} wrote:",
        "notification_subject": "New message from {tenant}",
        "notification_body": "{author} sent you a new message.",
        "open_portal": "Open the conversation",
        "via": "{staff} via {tenant}",
        "move_notice_subject": "Your message was moved",
        "move_notice_body": "Your message \"{subject}\" of {date} is now part of this conversation. Please "
                            "answer this email if you write to us about it again.",
        "staff_new_conversation": "New conversation {reference} from {author}: {subject}",
        "staff_customer_message": "{author} wrote in {reference}: {subject}",
        "staff_mention": "{author} mentioned you in {reference}: {subject}",
        "staff_assigned": "You are now responsible for {reference}: {subject}",
        "staff_delivery_failed": "Not delivered to {recipients}: {subject}",
        "staff_digest_subject": "{count} notification(s) from {tenant}",
        "staff_footer": "Notifications from {tenant}; change how you receive them in your settings.",
    },
    "fr": {
        "greeting": "Bonjour {name},",
        "greeting_anonymous": "Bonjour,",
        "ack_subject": "Nous avons bien reçu votre message",
        "ack_body": "Merci pour votre message. Il est bien parvenu à notre équipe, qui vous répondra rapidement.",
        "ack_reference": "Votre référence est {reference} ; gardez-la dans l'objet si vous nous écrivez à nouveau.",
        "auto_reply_subject": "Réponse automatique",
        "reply_hint": "Vous pouvez répondre directement à cet e-mail ; merci de garder la référence dans l'objet.",
        "attachments": "Pièces jointes",
        "previous": "Le {date}, {author} a écrit :",
        "notification_subject": "Nouveau message de {tenant}",
        "notification_body": "{author} vous a envoyé un nouveau message.",
        "open_portal": "Ouvrir la conversation",
        "via": "{staff} via {tenant}",
        "move_notice_subject": "Votre message a été déplacé",
        "move_notice_body": "Votre message « {subject} » du {date} fait maintenant partie de cette conversation. "
                            "Répondez à cet e-mail si vous nous écrivez encore à ce sujet.",
        "staff_new_conversation": "Nouvelle conversation {reference} de {author} : {subject}",
        "staff_customer_message": "{author} a écrit dans {reference} : {subject}",
        "staff_mention": "{author} vous a mentionné dans {reference} : {subject}",
        "staff_assigned": "Vous êtes maintenant responsable de {reference} : {subject}",
        "staff_delivery_failed": "Non distribué à {recipients} : {subject}",
        "staff_digest_subject": "{count} notification(s) de {tenant}",
        "staff_footer": "Notifications de {tenant} ; modifiez leur réception dans vos paramètres.",
    },
    "nl": {
        "greeting": "Beste {name},",
        "greeting_anonymous": "Beste,",
        "ack_subject": "We hebben uw bericht ontvangen",
        "ack_body": "Bedankt voor uw bericht. Het is bij ons team aangekomen en we nemen snel contact met u op.",
        "ack_reference": "Uw referentie is {reference}; laat die in het onderwerp staan als u ons opnieuw schrijft.",
        "auto_reply_subject": "Automatisch antwoord",
        "reply_hint": "U kunt rechtstreeks op deze e-mail antwoorden; laat de referentie in het onderwerp staan.",
        "attachments": "Bijlagen",
        "previous": "Op {date} schreef {author}:",
        "notification_subject": "Nieuw bericht van {tenant}",
        "notification_body": "{author} heeft u een nieuw bericht gestuurd.",
        "open_portal": "Het gesprek openen",
        "via": "{staff} via {tenant}",
        "move_notice_subject": "Uw bericht is verplaatst",
        "move_notice_body": "Uw bericht \"{subject}\" van {date} hoort nu bij dit gesprek. Antwoord op deze e-mail "
                            "als u ons er opnieuw over schrijft.",
        "staff_new_conversation": "Nieuw gesprek {reference} van {author}: {subject}",
        "staff_customer_message": "{author} schreef in {reference}: {subject}",
        "staff_mention": "{author} noemde u in {reference}: {subject}",
        "staff_assigned": "U bent nu verantwoordelijk voor {reference}: {subject}",
        "staff_delivery_failed": "Niet afgeleverd aan {recipients}: {subject}",
        "staff_digest_subject": "{count} melding(en) van {tenant}",
        "staff_footer": "Meldingen van {tenant}; wijzig in uw instellingen hoe u ze ontvangt.",
    },
    "de": {
        "greeting": "Hallo {name},",
        "greeting_anonymous": "Hallo,",
        "ack_subject": "Wir haben Ihre Nachricht erhalten",
        "ack_body": "Vielen Dank für Ihre Nachricht. Sie ist bei unserem Team angekommen; wir melden uns bald.",
        "ack_reference": "Ihre Referenz ist {reference}; bitte lassen Sie sie im Betreff, wenn Sie uns erneut "
                         "schreiben.",
        "auto_reply_subject": "Automatische Antwort",
        "reply_hint": "Sie können direkt auf diese E-Mail antworten; bitte lassen Sie die Referenz im Betreff.",
        "attachments": "Anhänge",
        "previous": "Am {date} schrieb {author}:",
        "notification_subject": "Neue Nachricht von {tenant}",
        "notification_body": "{author} hat Ihnen eine neue Nachricht geschickt.",
        "open_portal": "Unterhaltung öffnen",
        "via": "{staff} über {tenant}",
        "move_notice_subject": "Ihre Nachricht wurde verschoben",
        "move_notice_body": "Ihre Nachricht „{subject}“ vom {date} gehört jetzt zu dieser Unterhaltung. Bitte "
                            "antworten Sie auf diese E-Mail, wenn Sie uns erneut dazu schreiben.",
        "staff_new_conversation": "Neue Unterhaltung {reference} von {author}: {subject}",
        "staff_customer_message": "{author} schrieb in {reference}: {subject}",
        "staff_mention": "{author} hat Sie in {reference} erwähnt: {subject}",
        "staff_assigned": "Sie sind jetzt für {reference} zuständig: {subject}",
        "staff_delivery_failed": "Nicht zugestellt an {recipients}: {subject}",
        "staff_digest_subject": "{count} Benachrichtigung(en) von {tenant}",
        "staff_footer": "Benachrichtigungen von {tenant}; ändern Sie den Empfang in Ihren Einstellungen.",
    },
}
LOCALES = tuple(STRINGS)


def normalize(locale: str | None) -> str:
    """'fr_BE', 'FR-be' -> 'fr'; anything unknown -> 'en'."""
    base = (locale or "en").replace("_", "-").split("-")[0].lower()
    return base if base in STRINGS else "en"


def translator(locale: str | None) -> Callable[..., str]:
    table = STRINGS[normalize(locale)]

    def t(key: str, **values: object) -> str:
        return table[key].format(**values)

    return t
