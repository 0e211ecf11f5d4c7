"""Build script: the package itself is plain Python; setup.py exists for the extension build.

The hot-path modules (``flowcore._values``, ``_context``, ``_codec``, ``_kernel``) are typed
Python written to be compiled by Cython; until the compiled build lands they run as they are.
"""

from setuptools import setup

setup()
