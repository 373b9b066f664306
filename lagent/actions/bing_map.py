"""``BINGMap``: distances, routes, coordinates and nearby places from the Bing
Maps REST services (needs the internet and a key)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lagent.actions._web import DEFAULT_TIMEOUT, WebError, failure, fetch, service_key
from lagent.actions.base_action import BaseAction
from lagent.actions.parser import BaseParser
from lagent.actions.tool import tool_api
from lagent.schema import ActionReturn

__all__ = ['BINGMap']


class BINGMap(BaseAction):
    """Look up map information: driving distances and routes, coordinates, places nearby.

    Args:
        key: The Bing Maps key; defaults to the ``BING_MAP_KEY`` environment variable.
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a lagent 0.2 call reads its input.
        enable: Whether the action is offered to models.
        base_url: The REST services' address.
        timeout: Seconds one lookup may take.

    Raises:
        ValueError: No key.
    """

    def __init__(
        self,
        key: str | None = None,
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] | None = None,
        enable: bool = True,
        *,
        base_url: str = 'https://dev.virtualearth.net/REST/V1/',
        timeout: float = DEFAULT_TIMEOUT,
    ):
        super().__init__(description, parser, enable)
        self.key = service_key(key, 'BING_MAP_KEY', owner='BINGMap', keyword='key', what='a Bing Maps key')
        self.base_url = base_url.rstrip('/') + '/'
        self.timeout = timeout

    def __repr__(self) -> str:
        return 'BINGMap()'

    @tool_api(explode_return=True)
    def get_distance(self, start: str, end: str) -> dict[str, Any] | ActionReturn:
        """Get the driving distance between two places, in km.

        Args:
            start: The start location.
            end: The end location.

        Returns:
            dict: distance information
                * distance (float): the distance in km
        """
        try:
            route = self._route(start, end)
        except WebError as exc:
            return failure(exc)
        return {'distance': route.get('travelDistance')}

    @tool_api(explode_return=True)
    def get_route(self, start: str, end: str) -> dict[str, Any] | ActionReturn:
        """Get the driving route between two places, step by step.

        Args:
            start: The start location.
            end: The end location.

        Returns:
            dict: route information
                * route (list): the steps of the route
        """
        try:
            route = self._route(start, end)
        except WebError as exc:
            return failure(exc)
        steps = [
            (item.get('instruction') or {}).get('text', '')
            for leg in route.get('routeLegs') or []
            for item in leg.get('itineraryItems') or []
        ]
        return {'route': steps}

    @tool_api(explode_return=True)
    def get_coordinates(self, location: str) -> dict[str, Any] | ActionReturn:
        """Get the latitude and longitude of a place.

        Args:
            location: The place.

        Returns:
            dict: coordinates information
                * latitude (float): the latitude
                * longitude (float): the longitude
        """
        try:
            place = self._first('Locations', {'q': location})
        except WebError as exc:
            return failure(exc)
        latitude, longitude = (place.get('point') or {}).get('coordinates') or [None, None]
        return {'latitude': latitude, 'longitude': longitude}

    @tool_api(explode_return=True)
    def search_nearby(
        self,
        search_term: str,
        places: str = 'unknown',
        latitude: float = 0.0,
        longitude: float = 0.0,
        radius: int = 5000,
    ) -> dict[str, Any] | ActionReturn:
        """Find places matching a search term near a location or coordinates.

        Args:
            search_term: What to look for, e.g. "restaurant".
            places: The place to search near ("unknown": use the coordinates).
            latitude: The latitude to search near.
            longitude: The longitude to search near.
            radius: The search radius in meters.

        Returns:
            dict: places information
                * places (list): name, address and phone of each place found
        """
        try:
            if places != 'unknown':
                place = self._first('Locations', {'q': places})
                latitude, longitude = (place.get('point') or {}).get('coordinates') or [latitude, longitude]
            view = f'{latitude},{longitude},{radius}'
            found = self._resources('LocalSearch', {'query': search_term, 'userCircularMapView': view, 'maxResults': 5})
        except WebError as exc:
            return failure(exc)
        return {
            'places': [
                {
                    'name': place.get('name'),
                    'address': (place.get('Address') or {}).get('formattedAddress'),
                    'phone': place.get('PhoneNumber'),
                }
                for place in found
            ]
        }

    def _route(self, start: str, end: str) -> dict[str, Any]:
        return self._first('Routes/Driving', {'wp.0': start, 'wp.1': end, 'du': 'km'})

    def _first(self, service: str, params: dict[str, Any]) -> dict[str, Any]:
        found = self._resources(service, params)
        if not found:
            raise WebError(f'Bing Maps: nothing found for {params}')
        return found[0]

    def _resources(self, service: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        data = fetch(
            'Bing Maps',
            'GET',
            self.base_url + service,
            params={**params, 'o': 'json', 'key': self.key},
            timeout=self.timeout,
            secrets=(self.key,),
        ).json()
        sets = data.get('resourceSets') or [{}]
        return list(sets[0].get('resources') or [])
