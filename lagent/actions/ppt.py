"""``PPT``: build a PowerPoint file page by page (python-pptx, the ``pptx`` extra)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lagent._optional import import_optional
from lagent.actions.base_action import BaseAction
from lagent.actions.parser import BaseParser
from lagent.actions.tool import tool_api

__all__ = ['PPT', 'THEME_MAPPING']

THEME_MAPPING: dict[str, dict[str, Any]] = {
    'Default': {'template': None, 'title': 'Title Slide', 'single': 'Title and Content', 'two': 'Two Content'},
}
"""Themes by name: a ``template`` .pptx (``None``: python-pptx's own) and the
names of its layouts for the ``title`` page, ``single`` text pages and ``two``-column pages."""

ITEM_SEPARATOR = '[SPAN]'
"""Separates the bullet items of a page in one string (as lagent 0.2's prompts say)."""


class PPT(BaseAction):
    """Create a slide deck: a title page, text pages and text-and-image pages, saved as .pptx.

    The model chooses where the file is written (``abs_location``), so give
    this tool only to agents whose file writes you accept.

    Args:
        theme_mapping: Themes by name (default :data:`THEME_MAPPING`).
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a lagent 0.2 call reads its input.
        enable: Whether the action is offered to models.
    """

    def __init__(
        self,
        theme_mapping: Mapping[str, Mapping[str, Any]] | None = None,
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] | None = None,
        enable: bool = True,
    ):
        super().__init__(description, parser, enable)
        self.theme_mapping = {name: dict(theme) for name, theme in (theme_mapping or THEME_MAPPING).items()}
        self.pointer: Any = None
        """The presentation being built."""
        self.location: str | None = None
        """Where it will be saved."""
        self._theme: dict[str, Any] = {}

    @tool_api(explode_return=True)
    def create_file(self, theme: str, abs_location: str) -> dict[str, str]:
        """Start a new .pptx file in a theme.

        Args:
            theme: The theme, one of the configured names (e.g. "Default").
            abs_location: Where to save the file, an absolute path ending in .pptx.

        Returns:
            dict: operation status
                * status: what was done

        Raises:
            ValueError: An unknown theme, or a path that is not absolute.
        """
        pptx = import_optional('pptx', package='python-pptx', extra='pptx')
        if theme not in self.theme_mapping:
            raise ValueError(f'unknown theme {theme!r}; themes: {", ".join(self.theme_mapping)}')
        if not os.path.isabs(abs_location):
            raise ValueError(f'abs_location must be an absolute path, got {abs_location!r}')
        self._theme = self.theme_mapping[theme]
        self.pointer = pptx.Presentation(self._theme.get('template'))
        self.pointer.slide_master.name = theme
        self.location = abs_location
        return {'status': 'created a ppt file.'}

    @tool_api(explode_return=True)
    def add_first_page(self, title: str, subtitle: str) -> dict[str, str]:
        """Add the title page.

        Args:
            title: The presentation's title.
            subtitle: Its subtitle.

        Returns:
            dict: operation status
                * status: what was done
        """
        slide = self._add_slide('title')
        slide.shapes.title.text = title
        slide.placeholders[1].text = subtitle
        return {'status': 'added page'}

    @tool_api(explode_return=True)
    def add_text_page(self, title: str, bullet_items: str) -> dict[str, str]:
        """Add a page with a title and bullet points.

        Args:
            title: The page's title.
            bullet_items: The bullet points, separated by [SPAN].

        Returns:
            dict: operation status
                * status: what was done
        """
        slide = self._add_slide('single')
        slide.shapes.title.text = title
        _fill(slide.placeholders[1], bullet_items)
        return {'status': 'added page'}

    @tool_api(explode_return=True)
    def add_text_image_page(self, title: str, bullet_items: str, image: str) -> dict[str, str]:
        """Add a page with a title, bullet points on the left and an image on the right.

        Args:
            title: The page's title.
            bullet_items: The bullet points, separated by [SPAN].
            image: The path of an image file.

        Returns:
            dict: operation status
                * status: what was done

        Raises:
            FileNotFoundError: There is no image at ``image``.
        """
        if not Path(image).is_file():
            raise FileNotFoundError(f'no image file at {image!r}')
        slide = self._add_slide('two')
        slide.shapes.title.text = title
        text, picture = slide.placeholders[1], slide.placeholders[2]
        _fill(text, bullet_items)
        slide.shapes.add_picture(image, picture.left, picture.top, width=picture.width)
        picture.element.getparent().remove(picture.element)  # the empty placeholder the picture replaces
        return {'status': 'added page'}

    @tool_api(explode_return=True)
    def submit_file(self) -> dict[str, str]:
        """Save the file once every page is added.

        Returns:
            dict: operation status
                * status: what was done and where the file is
        """
        presentation = self._presentation()
        Path(self.location or '').parent.mkdir(parents=True, exist_ok=True)
        presentation.save(self.location)
        return {'status': f'submitted. view ppt at {self.location}'}

    def _presentation(self) -> Any:
        if self.pointer is None:
            raise ValueError('no file yet: call create_file first')
        return self.pointer

    def _add_slide(self, kind: str) -> Any:
        presentation = self._presentation()
        wanted = self._theme.get(kind)
        for layout in presentation.slide_layouts:
            if layout.name == wanted:
                return presentation.slides.add_slide(layout)
        raise ValueError(f'the theme has no layout named {wanted!r} (for {kind} pages)')


def _fill(placeholder: Any, bullet_items: str) -> None:
    items = [item.strip() for item in bullet_items.split(ITEM_SEPARATOR) if item.strip()]
    frame = placeholder.text_frame
    frame.text = items[0] if items else ''
    for item in items[1:]:
        frame.add_paragraph().text = item
