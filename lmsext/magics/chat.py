"""``%lm_chat show|view|reset|save``: the chats ``%%lm_respond`` keeps."""

from __future__ import annotations

from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments

from .. import render as views
from .args import parse_args
from .shared import FamilyMagics, user_errors


@magics_class
class ChatMagics(FamilyMagics):
    """Show, reset or save the chats of ``%%lm_respond``."""

    @line_magic
    @no_var_expand
    @user_errors("%lm_chat")
    @magic_arguments()
    @argument("action", choices=("show", "view", "reset", "save"),
              help="show the chat, view it as a live chat widget, forget it, or save it as JSON")
    @argument("path", nargs="?", help="file to write (save)")
    @argument("--chat", metavar="NAME", default="default", help="which chat (default: 'default')")
    def lm_chat(self, line: str) -> None:
        """Show, reset or save (as LM Studio's ``{"messages": [...]}`` JSON) a chat of %%lm_respond."""
        args = parse_args(self.lm_chat, line)
        name = args.chat
        if args.action == "show":
            self.show(views.chat_bundle(name, self.lm.session.chat(name)))
        elif args.action == "view":  # the chat widget; where widgets do not render, what show prints
            if not self.lm.use_widgets:
                self.show(views.chat_bundle(name, self.lm.session.chat(name)))
                return
            from IPython.display import display
            from ..widgets import ChatView
            display(ChatView(name, session=self.lm.session, client=self.lm.client))
        elif args.action == "reset":
            existed = self.lm.session.drop_chat(name)
            self.show(views.message_bundle(f"chat '{name}' reset" if existed else f"chat '{name}' was empty"))
        else:
            if not args.path:
                raise UsageError("save needs a PATH: %lm_chat save chat.json")
            chat = self.lm.session.chat(name)
            path = Path(args.path).expanduser()
            try:
                path.write_text(chat.to_json(), encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
            self.show(views.message_bundle(f"saved chat '{name}' ({len(chat)} messages) to {path}"))


__all__ = ["ChatMagics"]
