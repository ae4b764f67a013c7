"""What the throwaway servers share: start (cleaning up a failed start), stop, `with`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class EmbeddedServer(ABC):
    """Start with `start()` (or `with`), connect with `.url`, remove with `stop()`."""

    @property
    @abstractmethod
    def url(self) -> str:
        """Where clients connect."""

    @abstractmethod
    def _launch(self) -> None:
        """Start the server and return once it serves."""

    @abstractmethod
    def stop(self, *, remove: bool = True) -> None:
        """Stop the server if it runs; with `remove`, delete the files it owns."""

    def start(self) -> Self:
        try:
            self._launch()
        except BaseException:
            # `with` never calls __exit__ when __enter__ raises: don't leave a server behind.
            self.stop(remove=False)
            raise
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
