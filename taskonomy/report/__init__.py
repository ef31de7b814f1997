"""The report: ``build`` reads the stages' outputs and assembles the sections, ``figures`` draws them and
``page`` writes the self-contained HTML page and the Markdown."""
