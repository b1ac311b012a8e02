# Comuni a tutte le pagine (centro privacy e console).
common-site-name = Privacy
common-skip-to-content = Vai al contenuto
common-language-switch = Lingua
common-language-name-en = English
common-language-name-it = Italiano
common-language-name-zh-Hans = 简体中文
common-error-title = Si è verificato un problema
common-error-internal = Non è stato possibile mostrare la pagina. Riprova tra poco.
common-error-too-large = Il modulo è troppo grande per essere accettato.
common-error-bad-form = Non è stato possibile leggere il modulo. Torna indietro e riprova.
common-error-csrf = Questo modulo non è stato inviato da questo sito oppure è scaduto. Torna indietro, ricarica la pagina e riprova.
common-error-unavailable = Il centro privacy non è disponibile al momento. Riprova più tardi.
common-back-to-privacy-center = Torna al centro privacy
