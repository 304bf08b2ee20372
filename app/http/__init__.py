"""The HTTP shell: the Litestar app, its routes, pages, cookies and security headers."""
