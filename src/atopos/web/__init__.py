"""Static pages and vanilla ES modules of the browser client (served by server/pages.py).

No build step: the files here are what the browser runs. See docs/browser.md.
"""
