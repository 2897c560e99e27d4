"""The Studio's input error, in a module of its own: the UI's routing raises it without importing the facade
(and through it torch and the model code). studio/types.py and studio/facade.py re-export it.
"""


class StudioInputError(ValueError):
    """A request the model cannot serve as given; the message is meant for the user."""
