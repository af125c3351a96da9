"""Bookinfo demo apps that behave like Istio's ``samples/bookinfo`` images where Istio's tasks look.

The lab runs ``python -m meshctl.apps.bookinfo.<app>`` in place of the sample's container images:

* ``productpage`` -- the HTML front end; calls ``details`` and ``reviews``.
* ``details`` -- fixed facts about the book.
* ``reviews`` -- two reviews; v2/v3 add star ratings fetched from ``ratings`` (black / red stars).
* ``ratings`` -- per-product star ratings, kept in memory.

Each serves ``GET /health`` and listens on ``--port`` (default 9080). They use the standard
library only, so they start quickly inside a pod's network namespace. Behaviour that Istio's
traffic-management tasks depend on (the ``end-user`` header after signing in, the upstream
timeouts and productpage's single retry to reviews, header propagation, the error texts on the
page) matches the originals; the code and markup are written from scratch.
"""
