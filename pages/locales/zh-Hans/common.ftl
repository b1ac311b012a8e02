# 所有页面共用（隐私中心和控制台）。
common-site-name = 隐私
common-skip-to-content = 跳到正文
common-language-switch = 语言
common-language-name-en = English
common-language-name-it = Italiano
common-language-name-zh-Hans = 简体中文
common-error-title = 出现问题
common-error-internal = 无法显示此页面。请稍后重试。
common-error-too-large = 表单内容过大，无法接受。
common-error-bad-form = 无法读取表单。请返回后重试。
common-error-csrf = 此表单并非从本网站提交，或已过期。请返回、刷新页面后重试。
common-error-unavailable = 隐私中心暂时无法使用。请稍后再试。
common-back-to-privacy-center = 返回隐私中心
