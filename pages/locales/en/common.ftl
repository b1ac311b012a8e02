# Shared by every page (privacy center and console).
common-site-name = Privacy
common-skip-to-content = Skip to content
common-language-switch = Language
common-language-name-en = English
common-language-name-it = Italiano
common-language-name-zh-Hans = 简体中文
common-error-title = Something went wrong
common-error-internal = The page could not be shown. Please try again in a moment.
common-error-too-large = The form was too large to be accepted.
common-error-bad-form = The form could not be read. Please go back and try again.
common-error-csrf = This form was not sent from this site, or it has expired. Go back, reload the page and try again.
common-error-unavailable = The privacy center is not available at the moment. Please try again later.
common-back-to-privacy-center = Back to the privacy center
