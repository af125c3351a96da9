"""tc programs (C compiled at run time by bcc) that steer enrolled pods' traffic into ztunnel.

Not built yet: issue 5 fills this package. It imports nothing from the rest of the project.
"""
