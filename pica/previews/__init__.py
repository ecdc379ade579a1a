"""Link previews (docs/protocol.md section 30): the title, description and image of the first link of a message,
fetched off the send path by a ``preview`` job and attached to the message for everyone, as an event.

- :mod:`pica.previews.extract`: sans-I/O: a page's bytes in, its preview fields out (Open Graph, Twitter card,
  ``<title>``, ``<meta name="description">``).
- :mod:`pica.previews.fetch`: the SSRF-safe fetcher: every hop's host resolved here and checked, the connection made
  to the checked address only, redirects followed by hand and checked again, size, time and content-type limits.
- :mod:`pica.previews.job`: the ``preview`` job's handler: the cache, the fetch, the thumbnail, the event.
"""
