"""Work on recorded data: labelled datasets and the user's folders, metrics, evaluation, fitting."""
