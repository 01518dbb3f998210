"""What the command lines share (imports nothing heavy: the web tier may use it)."""

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Append each option's default unless its help already names it; keep the examples."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: {action.default})"
