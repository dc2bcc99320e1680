"""Render a stored transcript in any of OpenAI's five response formats."""

from wazo_stt.formats.render import Rendered, render

__all__ = ["Rendered", "render"]
