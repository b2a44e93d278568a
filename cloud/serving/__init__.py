"""Production serving: gunicorn with a worker that keeps slow and silent clients off its threads.

application.py runs `create_app` under gunicorn (`tandem-cloud serve`);
worker.py is the worker class that does TLS handshakes and reads request
heads in its event loop, each under a deadline.
"""
